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
from textual import events
from textual.geometry import Region
from textual.widgets import DataTable

from appliance.client import ApiClient, ApiError
from appliance.rules.registry import iso, parse_iso
from conftest import DIRECTOR, PEOPLE, People, ServingCentral
from test_footage import encode_testsrc2, record
from test_node_control import ControlClient, enrol, new_node, pattern, post_entrance_sign, send_view
from tui.actions import ACTIONS
from tui.app import CustodianApp
from tui.format import local
from tui.profiles import PROFILES
from tui.screens.alerts import AlertsScreen
from tui.screens.approvals import ApprovalsScreen
from tui.screens.cameras import CamerasScreen, PlacementScreen
from tui.screens.breaches import AccessScreen, BreachCaseScreen, BreachesScreen, BreachReportScreen, CopiesScreen
from tui.screens.dialogs import Confirm, Fields
from tui.screens.help import HelpScreen
from tui.screens.home import HomeScreen
from tui.screens.incidents import OwedReportScreen
from tui.screens.incidents import (IncidentDetailScreen, IncidentFormScreen, IncidentsScreen, MyRequestsScreen,
                                   RequestFormScreen)
from tui.screens.login import LoginScreen
from tui.screens.live import LiveScreen, LiveViewScreen
from tui.screens.notices import NoticeFormScreen, NoticesScreen
from tui.screens.releases import BuildScreen, InstrumentsScreen, ReleasesScreen
from tui.screens.review import GrantsScreen, ReviewScreen
from tui.screens.seal import SealScreen
from tui.screens.session import PassphraseScreen, PolicyScreen
from tui.widgets.picture import HALF, Picture
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
    # Mounted too: a switched-to screen is on top before its widgets are (a loaded machine shows the gap).
    await until(pilot, lambda: isinstance(pilot.app.screen, kind) and pilot.app.screen.is_mounted,
                timeout, kind.__name__)
    return pilot.app.screen


async def type_text(pilot, text: str):
    names = {"-": "minus", " ": "space", ":": "colon", ",": "comma", ".": "full_stop", "'": "apostrophe"}
    for ch in text:
        await pilot.press(names.get(ch, ch))


async def press_twice_at_once(pilot, key: str):
    """A key pressed twice in one burst, as a terminal delivers a quick double press: the app reads
    both before any answer from the central can come back."""
    for _ in range(2):
        event = events.Key(key, None)
        event.set_sender(pilot.app)
        pilot.app.post_message(event)
    await pilot.pause()


def message(app) -> str:
    try:
        return str(app.screen.query_one("#message").render())
    except Exception:
        return ""


def painted_message(app) -> str:
    """The message line as painted on the terminal: what a person reads, not what was said."""
    line = app.screen.query_one("#message")
    strips = line.render_lines(Region(0, 0, line.size.width, line.size.height))
    return " ".join(" ".join(strip.text.split()) for strip in strips).strip()


def status(app) -> str:
    try:
        return str(app.screen.query_one("#status").render())
    except Exception:
        return ""


def shown_keys(app) -> list[str]:
    """The screen's own keys in the footer (after the app's: F1, F2, F9)."""
    return [key for key, b in app.active_bindings.items()
            if b.binding.show and not key.startswith("f") and key != "question_mark"]


def highlighted_command(app) -> str:
    """The command the palette would run on Enter."""
    from textual.command import CommandList

    commands = app.screen.query_one(CommandList)
    if commands.highlighted is None:
        return ""
    prompt = commands.get_option_at_index(commands.highlighted).prompt
    return getattr(prompt, "plain", str(prompt))


async def log_in(pilot, user: str, passphrase: str):
    await on(pilot, LoginScreen)
    await type_text(pilot, user)
    await pilot.press("enter")
    await type_text(pilot, passphrase)
    await pilot.press("enter")
    return await on(pilot, HomeScreen)


async def staff_opens_the_incident_form(pilot):
    """Sam logs in and opens a new incident report from the incidents screen (F4, N)."""
    await log_in(pilot, "sam", PEOPLE["sam"][1])
    await pilot.press("f4")
    incidents = await on(pilot, IncidentsScreen)
    await pilot.press("n")
    return incidents, await on(pilot, IncidentFormScreen)


async def fill(pilot, **values):
    """Fill in the fields of the screen or dialog on top (by id), then send it with F5. (Typing key by
    key is the other tests' part: here it would only make the long paths slow.)"""
    await until(pilot, lambda: all(pilot.app.screen.query_one(f"#{field}") for field in values),
                what=f"the fields {', '.join(values)}")
    for field, text in values.items():
        pilot.app.screen.query_one(f"#{field}").value = text
    await pilot.press("f5")


async def discard_typed(pilot):
    """Escape from a dialog with something typed: it asks first; Y throws it away."""
    await pilot.press("escape")
    await on(pilot, Confirm)
    assert "discard" in pilot.app.screen.title_text
    await pilot.press("y")


def confirm_text(app) -> str:
    return str(app.screen.query_one("#confirm-text").render())


async def send_confirmed(pilot, *expected: str):
    """F5 sends the form; the confirmation says what will be done (each of `expected`); Y goes ahead."""
    await pilot.press("f5")
    await on(pilot, Confirm)
    for text in expected:
        assert text in confirm_text(pilot.app)
    await pilot.press("y")


async def open_home_item(pilot, item: str):
    """Press the number of a home item the API listed (its place depends on what else needs attention)."""
    home = await on(pilot, HomeScreen)
    await until(pilot, lambda: any(i["item"] == item for i in home.items), what=f"the home item {item}")
    await pilot.press(str([i["item"] for i in home.items].index(item) + 1))


def local_text(t: datetime) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M")


def app_for(world, **kwargs) -> CustodianApp:
    app = CustodianApp(world.socket, profile=kwargs.pop("profile", "full"), **kwargs)
    app.watch_wait = 2   # the long poll comes back quickly so the app exits promptly
    return app


def test_every_footer_fits_80_columns_for_the_director():
    """The footer shows a screen's keys in one line: what does not fit is cut off (the Director has the most)."""
    import importlib
    import inspect
    import pkgutil

    import tui.screens
    from textual.screen import Screen

    for module in pkgutil.iter_modules(tui.screens.__path__):
        for name, screen in inspect.getmembers(importlib.import_module(f"tui.screens.{module.name}"), inspect.isclass):
            shown = {b.action: f" {b.key_display} {b.description} " for b in getattr(screen, "BINDINGS", ())
                     if issubclass(screen, Screen) and getattr(b, "show", False)}
            # A screen that shows one of several sets of keys (by the selected line) has each footer checked.
            footers = getattr(screen, "FOOTERS", ())
            alternatives = set().union(*footers)
            for footer in footers or [set()]:
                keys = [item for action, item in shown.items()
                        if action.split("(")[0] in footer or action.split("(")[0] not in alternatives]
                assert sum(len(item) for item in keys) <= 80, f"{name}: {''.join(keys)}"


def test_every_table_fits_80_columns():
    """A table's columns (each with a cell of padding either side) fit the screen, and its scrollbar."""
    import ast
    from pathlib import Path

    import tui.screens

    for path in Path(tui.screens.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.For) and ast.unparse(node.target) == "(label, width)":
                widths = [column.elts[1].value for column in node.iter.elts]
                assert sum(w + 2 for w in widths) <= 79, f"{path.name}:{node.lineno}: {sum(w + 2 for w in widths)}"


# --------------------------------------------------------------------------- the main paths


async def test_staff_files_an_incident_and_requests_review(world):
    central = world.central
    before = {r["id"] for r in central.records.all("requests")}
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        _, form = await staff_opens_the_incident_form(pilot)
        await until(pilot, lambda: "I attest" in str(form.query_one("#attestation-text").render()),
                    what="the attestation text from the API")
        await pilot.pause(0.6)
        assert message(app) == ""                        # nothing typed yet: no verdict on the form yet
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
        await until(pilot, lambda: '"Cameras" must name at least one' in message(app), what="what is missing")
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
    waiting = pending_request(world)                     # still in the queue after: its hint follows the note
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, *DIRECTOR)
        await pilot.press("f5")
        queue = await on(pilot, ApprovalsScreen)
        await until(pilot, lambda: any(r["id"] == request["id"] for r in queue.requests), what="the queue")
        queue.query_one("#queue").move_cursor(row=[r["id"] for r in queue.requests].index(request["id"]))
        # The text follows the highlight's message, not the move itself: wait for it (0.1 s was a guess).
        await until(pilot, lambda: "car park" in str(queue.query_one("#request-text").render()),
                    what="the highlighted request in full")
        asked = str(queue.query_one("#request-text").render())   # in full: the table cuts what does not fit
        assert "sam asks to review the recordings of cam-a, cam-b" in asked and "car park" in asked
        await pilot.press("n")
        await until(pilot, lambda: pilot.app.screen.query_one("#cameras"))
        dialog = pilot.app.screen
        dialog.query_one("#cameras").value = ""
        await type_text(pilot, "cam-a")                  # fewer cameras
        await pilot.press("enter", "enter")
        start = dialog.query_one("#start").value
        dialog.query_one("#start").value = local_text(world.recorded_at - timedelta(hours=1))   # wider than asked
        dialog.query_one("#end").value = (world.recorded_at + timedelta(minutes=1)).astimezone().strftime(
            "%Y-%m-%d %H:%M:%S")
        dialog.query_one("#expires_hours").value = "24"
        dialog.query_one("#reason").focus()
        await type_text(pilot, "narrow: only the car park camera")
        await pilot.press("enter")
        await on(pilot, Confirm)
        await pilot.press("y")
        await until(pilot, lambda: pilot.app.screen is dialog and "C17" in message(app), what="the refusal")
        assert "inside the requested one" in message(app)                   # said in the dialog, in words
        assert dialog.query_one("#reason").value == "narrow: only the car park camera"   # nothing typed lost
        dialog.query_one("#start").value = start
        await pilot.press("f5")
        confirm = await on(pilot, Confirm)
        text = str(confirm.query_one("#confirm-text").render())
        assert "cam-a" in text and "cam-b" not in text and "24 h" in text     # exactly what will be granted
        await pilot.press("y")
        await until(pilot, lambda: "grant" in message(app), what="the decision")
        await until(pilot, lambda: "Enter: the incident report." in message(app), what="the queue's hint")
        # The note and the hint, none cut off, once the line is laid out again (0.1 s was a guess).
        await until(pilot, lambda: painted_message(app) == " ".join(message(app).split()),
                    what="the message painted in full")
    decided = world.central.records.get("requests", request["id"])
    grant = world.central.records.get("grants", decided["grant"])
    assert decided["status"] == "approved"
    assert grant["cameras"] == ["cam-a"] and grant["end"] == iso(world.recorded_at + timedelta(minutes=1))
    assert world.central.audit.query(action_prefix="request.decide")[-1]["details"]["narrowed"] is True
    world.people.call("director", "request.decide", request=waiting["id"], decision="deny", reason="not needed")


async def test_staff_see_the_directors_decision_and_her_reason_while_they_wait(world):
    request = pending_request(world)
    app = app_for(world, profile=replace(PROFILES["full"], refresh_seconds=0.3))
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sam", PEOPLE["sam"][1])
        await pilot.press("f5")
        mine = await on(pilot, MyRequestsScreen)
        await until(pilot, lambda: mine.requests and mine.requests[0]["id"] == request["id"], what="her request")
        assert "Waiting for the Director" in str(mine.query_one("#request-text").render())
        world.people.call("director", "request.decide", request=request["id"], decision="deny",
                          reason="the car park camera does not reach that far")
        await until(pilot, lambda: f"denied {request['id']}" in message(app), what="the decision, unasked")
        assert "does not reach that far" in str(mine.query_one("#request-text").render())


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


async def test_review_waits_for_the_seal_and_goes_on_by_itself_when_the_director_unseals(world):
    grant = grant_for_sam(world)
    world.people.call("director", "archive.seal")
    app = app_for(world, profile="console")
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sam", PEOPLE["sam"][1])
        app.push_screen(ReviewScreen(grant["id"]))
        review = await on(pilot, ReviewScreen)
        await until(pilot, lambda: "unseal" in message(app), what="why nothing is shown")
        assert message(app).startswith("The archive is sealed") and "Archive sealed: the archive" not in message(app)
        assert "goes on by itself" in " ".join(review.query_one(Picture).render_line(y).text for y in range(4))
        world.people.unseal()                            # on the Director's terminal
        await until(pilot, lambda: review.query_one(Picture)._lines, what="the timeline and still, unasked")
        assert "Left/Right" in message(app)              # how to find the moment
        assert review.query_one(Timeline).render_line(0).text.startswith("> cam-a ")


def test_the_timeline_starts_where_the_recording_starts_and_for_danger_where_it_ends(world):
    grant = grant_for_sam(world, seconds_after=60)
    world.people.unseal()
    answer = world.people.call("sam", "footage.timeline", grant=grant["id"])
    review, danger = Timeline(), Timeline()
    review.load(answer)
    danger.load(answer, latest=True)                     # imminent danger: what just happened
    assert review.cursor == world.recorded_at
    assert danger.cursor == world.recorded_at + timedelta(seconds=8 - 2)
    assert review.label >= len("> cam-a") + 1


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
        owed = await on(pilot, OwedReportScreen)
        assert owed.use_id == review.danger_use
        await pilot.press("n")                           # a new one (or Enter: link one already filed)
        form = await on(pilot, IncidentFormScreen)
        assert form.link_use == review.danger_use
    uses = central.records.search("requests", kind="imminent_danger")
    assert len(uses) == before + 1 and uses[-1]["requested_by"] == world.people.ids["sam"]
    assert central.records.search("alerts", kind="imminent_danger")


async def test_the_danger_form_says_what_is_wrong_before_the_confirmation_and_keeps_what_was_typed(world):
    central = world.central
    before = len(central.records.search("requests", kind="imminent_danger"))
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sam", PEOPLE["sam"][1])
        await pilot.press("f9")
        await until(pilot, lambda: pilot.app.screen.query_one("#reason"), what="the danger form")
        dialog = pilot.app.screen
        await type_text(pilot, "a man with a knife at the desk")
        dialog.query_one("#cameras").value = "cam-a"
        dialog.query_one("#minutes").value = "45"            # the form says 1-30
        await pilot.press("enter")
        await until(pilot, lambda: "between 1 and 30" in message(app), what="the minutes refused in the form")
        assert pilot.app.screen is dialog                    # no confirmation, no dialog lost
        assert dialog.query_one("#reason").value == "a man with a knife at the desk"
        dialog.query_one("#minutes").value = "20"
        await pilot.press("enter")
        confirm = await on(pilot, Confirm)
        assert "last 20 minutes" in str(confirm.query_one("#confirm-text").render())
        await pilot.press("n")
    assert len(central.records.search("requests", kind="imminent_danger")) == before   # a check writes nothing


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
        home = await log_in(pilot, "sue", PEOPLE["sue"][1])
        token = app.api.token
        session = world.central.sessions[token]
        # The home screen's first fetch is a person's call (it extends the session): wait until it and
        # every call started with it have answered, not a fixed time (loaded, it came after the rewind).
        await until(pilot, lambda: home.items, what="the home screen's first answer")
        first_calls = list(app.workers)
        await until(pilot, lambda: all(w.is_finished for w in first_calls), what="the first calls answered")
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
    app.watch_wait = 25   # the longest wait the central allows: what comes well before its end came at once
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, *DIRECTOR)
        await pilot.press("f4")
        await on(pilot, IncidentsScreen)
        await until(pilot, lambda: app.latest_alert is not None, what="the watch")
        await pilot.pause(0.3)
        world.people.call("sue", "breach.report", what="a still was shown to a visitor at the desk",
                          noticed_at=iso(world.central.now()))
        await until(pilot, lambda: "NEW ALERT" in status(app), timeout=12, what="the alert at once")
        assert isinstance(app.screen, IncidentsScreen)
        who, alert = status(app).splitlines()
        assert "director (the Director)" in who                      # the role in words, not its code
        assert len(alert) <= 78 and alert.endswith("... (F3)"), alert   # cut, saying where to read it all
        app.watch_wait = 1
        world.people.call("sam", "imminent.invoke", reason="a fight broke out at the desk", cameras=["cam-a"])
        await pilot.press("f3")                          # the alert in words: its kind as people say it
        alerts = await on(pilot, AlertsScreen)
        await until(pilot, lambda: alerts.query_one(DataTable).row_count, what="the alerts")
        kinds = [alerts.query_one(DataTable).get_row_at(n)[2] for n in range(alerts.query_one(DataTable).row_count)]
        assert "imminent danger" in kinds and not any("_" in k for k in kinds), kinds


async def test_an_alert_for_a_screen_still_opening_is_fetched_when_it_shows(world):
    """The watch's news for a screen pushed with data fetched before it, not yet mounted: it has
    no table to repaint yet, so it fetches afresh when it shows (once, the watch thread died here)."""
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, *DIRECTOR)
        await until(pilot, lambda: app.latest_alert is not None, what="the watch")
        app.session_gen += 1                             # the watch thread stops: this test plays its part
        before = world.people.call("director", "alert.list", limit=200)
        world.people.call("sue", "breach.report", what="a still was left on the desk screen",
                          noticed_at=iso(world.central.now()))
        news = world.people.call("director", "session.watch", after=app.latest_alert, wait=0)
        screen = AlertsScreen()
        screen.preloaded = before
        app.push_screen(screen)
        app._watched(news, app.session_gen)              # in the same tick: the screen is not mounted yet
        await on(pilot, AlertsScreen)
        await until(pilot, lambda: screen.query_one(DataTable).row_count == len(before["alerts"]) + 1,
                    what="the new alert on the screen that was opening")


async def test_an_answer_for_a_screen_still_opening_is_shown_once_it_has_its_widgets(world):
    """A call made through `app.screen` right after a push can answer before the pushed screen has
    composed: `is_attached` is already true then, and painting it raised NoMatches (the answer lost)."""
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, *DIRECTOR)
        answer = world.people.call("director", "alert.list", limit=200)
        screen = AlertsScreen()
        app.push_screen(screen)
        screen._deliver(screen.show, answer)             # in the same tick: not composed yet
        await on(pilot, AlertsScreen)
        await until(pilot, lambda: screen.query_one(DataTable).row_count == len(answer["alerts"]) > 0,
                    what="the answer on the screen that was opening")


async def test_the_watchs_news_as_the_app_closes_is_dropped_not_raised_in_its_thread(world):
    """The app closes its screens before its unmount ends the watch: news in between found no
    screen (ScreenStackError in the watch thread)."""
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, *DIRECTOR)
        await until(pilot, lambda: app.latest_alert is not None, what="the watch")
        gen = app.session_gen = app.session_gen + 1      # the watch thread stops: this test plays its part
        world.people.call("sue", "breach.report", what="a still was left on the printer",
                          noticed_at=iso(world.central.now()))
        news = world.people.call("director", "session.watch", after=app.latest_alert, wait=0)
        assert news["alerts"]
    assert not app.is_running and not app.screen_stack
    app.session_gen = gen                                # as in the gap before the unmount
    app._watched(news, gen)
    app._watch_failed(ApiError("unavailable", "the central is not answering"), gen)


async def test_quitting_while_a_screen_opens_is_quiet(world):
    """The app closes its screens before a screen just pushed has run its on_mount: its widgets are
    gone, and each on_mount that looks one up raised NoMatches as the app closed (a traceback on quitting)."""
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, *DIRECTOR)
        app.push_screen(AlertsScreen())
        app.exit()                                       # Ctrl+Q in the same tick
    assert app.return_code in (0, None)


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
        assert "archive" not in status(app)               # the seal it last said may no longer be true
        world.central.sessions.clear()                    # a restart forgets every session
        world.people.tokens.clear()                       # (the tests' own sessions too: log in again)
        world.serving = ServingCentral(world.central)
        login = await on(pilot, LoginScreen, timeout=20)
        assert "restarted" in message(app)
        await log_in(pilot, "sue", PEOPLE["sue"][1])
        del login


async def test_the_central_going_and_coming_back_under_the_command_palette(world):
    """The watch tells the screen on top; Textual's command palette has no message line (an
    AttributeError there ended the watch thread: the central's return was never noticed)."""
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sue", PEOPLE["sue"][1])
        await until(pilot, lambda: app.latest_alert is not None, what="the watch")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: type(app.screen).__name__ == "CommandPalette" and app.screen.is_mounted,
                    what="the palette")
        world.serving.stop()
        try:
            await until(pilot, lambda: not app.central_ok, what="the central's absence noticed")
        finally:
            world.serving = ServingCentral(world.central)
        await until(pilot, lambda: app.central_ok, what="the central's return noticed")
        assert type(app.screen).__name__ == "CommandPalette"
        await pilot.press("escape")
        await until(pilot, lambda: "archive" in status(app), what="the status line whole again")


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
        # Only what works here is offered: F10 logs out; home and danger open nothing before (C8, C22).
        footer = {key for key, b in app.active_bindings.items() if b.binding.show}
        assert "f10" in footer and not {"f2", "f9"} & footer
        for text in ("temporary-ann-1", "ann-own-passphrase-1", "ann-own-passphrase-1"):
            await type_text(pilot, text)
            await pilot.press("enter")
        await on(pilot, PolicyScreen)
        footer = {key for key, b in app.active_bindings.items() if b.binding.show}
        assert "f10" in footer and not {"f2", "f9"} & footer
        await pilot.press("a")
        await on(pilot, HomeScreen)
        assert {"f2", "f9"} <= {key for key, b in app.active_bindings.items() if b.binding.show}
    ann = central.records.search("users", name="ann")[0]
    assert ann["must_change_passphrase"] is False and ann["policy_ack"]
    assert central.audit.query(action_prefix="user.change_passphrase")[-1]["actor"] == ann["id"]


async def test_the_director_unseals_and_everyone_sees_the_seal_in_the_status_line(world):
    world.people.call("director", "archive.seal")
    staff = app_for(world)
    staff.watch_wait = 25   # the longest wait the central allows: what comes well before its end came at once
    async with staff.run_test(size=(80, 24)) as staff_pilot:
        await log_in(staff_pilot, "sue", PEOPLE["sue"][1])
        await until(staff_pilot, lambda: "archive SEALED" in status(staff), what="the seal shown")
        director = app_for(world)
        async with director.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, *DIRECTOR)
            await pilot.press("f8")
            await on(pilot, SealScreen)
            await until(pilot, lambda: shown_keys(director) == ["u", "k"], what="only the keys that unseal")
            await pilot.press("u")
            await type_text(pilot, "not-my-passphrase")
            await pilot.press("enter")
            await until(pilot, lambda: "Wrong passphrase" in message(director), what="the refusal")
            await pilot.press("u")
            await type_text(pilot, DIRECTOR[1])
            await pilot.press("enter")
            await until(pilot, lambda: "archive unsealed" in status(director), what="unsealed")
            await until(pilot, lambda: message(director).startswith("Archive unsealed"), what="what was done")
            assert shown_keys(director) == ["s"]
        await until(staff_pilot, lambda: "archive unsealed" in status(staff), timeout=8,
                    what="the seal change on another terminal at once")
        staff.watch_wait = 1
    assert world.central.custody.is_sealed is False
    assert world.central.audit.query(action_prefix="archive.unseal")[-1]["actor"] == world.people.ids["director"]


async def test_the_command_palette_reads_the_action_registry(world):
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sue", PEOPLE["sue"][1])
        await pilot.press("ctrl+p")
        await until(pilot, lambda: type(app.screen).__name__ == "CommandPalette" and app.screen.is_mounted,
                    what="the palette")
        await type_text(pilot, "Incident reports")
        # The palette searches in a worker: Enter before its answer selects nothing (a fixed pause was a guess).
        await until(pilot, lambda: "Incident reports" in highlighted_command(app), what="the command found")
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
        purpose = "watch the entrance at closing for the patron who broke the returns box this morning"
        pilot.app.screen.query_one("#answer").value = purpose
        await pilot.press("enter")
        screen = await on(pilot, LiveViewScreen)
        view = central.records.get("live_views", screen.view["id"])
        assert view["purpose"] == purpose and view["closed_at"] is None
        title = screen.query_one("#live-title")           # in full at 80 columns, frame or not (it was cut at 40)
        painted = " ".join(s.text for s in title.render_lines(Region(0, 0, title.size.width, title.size.height)))
        assert " ".join(painted.split()) == f"Live: cam-a purpose: {purpose}"
        await until(pilot, lambda: screen.query_one(Picture)._message, what="the frame, or why there is none")
        await pilot.pause(0.3)
        assert "unexpected" not in message(app) and not message(app).strip().startswith("error")
        assert [key for key, b in app.active_bindings.items() if b.binding.show][-1:] == ["c"]   # close; no "open" here
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
        await pilot.press("f")                           # its length and rate: the API says what it allows
        await fill(pilot, seconds="61", fps="5")
        await on(pilot, ReviewScreen)
        await pilot.press("p")
        await until(pilot, lambda: "between 1 and 60" in message(app), what="the API's limit")
        await pilot.press("f")
        await fill(pilot, seconds="4", fps="5")
        await on(pilot, ReviewScreen)
        await pilot.press("p")
        info = review.query_one("#frame-info")
        # Playing and past its first frame (waiting to read "frame 2/" missed it when a loaded poll slept past it).
        await until(pilot, lambda: review.playing is not None and review.frame >= 1, what="the flipbook playing")
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
    assert (entry["details"]["seconds"], entry["details"]["fps"]) == (4, 5)
    assert len(review.clip["frames"]) + len(review.clip["missing"]) == 20


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
        await until(pilot, lambda: "j" in shown_keys(app), what="J in the footer for a DANGER use")
        assert "a" not in shown_keys(app) and "n" not in shown_keys(app)   # no key shown that would do nothing
        await pilot.press("a")
        assert pilot.app.screen is queue
        await pilot.press("j")
        await type_text(pilot, "staff were in danger")
        await pilot.press("enter")
        confirm = await on(pilot, Confirm)
        assert "justified" in str(confirm.query_one("#confirm-text").render())
        await pilot.press("y")
        await until(pilot, lambda: "reviewed" in message(app), what="the review recorded")
    review = world.central.records.get("requests", use["id"])["review"]
    assert review["finding"] == "justified" and review["by"] == world.people.ids["director"]


# --------------------------------------------------------------------------- breaches (C15, C16)


async def test_anyone_reports_a_possible_breach_from_any_screen_in_the_apis_words(world):
    central = world.central
    before = {b["id"] for b in central.records.all("breaches")}
    labels = ApiClient(world.socket).operations()["breach.report"]["labels"]
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sue", PEOPLE["sue"][1])
        await pilot.press("f7")
        live = await on(pilot, LiveScreen)
        await pilot.press("f1")                          # the key is in the help and the palette
        keys = (await on(pilot, HelpScreen)).query_one("#keys")
        assert any(str(keys.get_row_at(n)[0]) == "F12" and "breach" in str(keys.get_row_at(n)[1])
                   for n in range(keys.row_count))
        for n in range(keys.row_count):                  # each in full: a long one takes two lines, none is cut
            action = next(a for a in ACTIONS if a.id == keys.coordinate_to_cell_key((n, 0)).row_key.value)
            assert " ".join(str(keys.get_row_at(n)[1]).split()) == action.help
        await pilot.press("escape")
        await on(pilot, LiveScreen)
        commands = list(app.get_system_commands(app.screen))
        assert any("privacy breach" in c.title and c.help.startswith("F12") for c in commands)
        assert all(c.title != c.help for c in commands)  # the palette says each thing once, with its key
        await pilot.press("f12")
        dialog = await on(pilot, Fields)
        assert [str(label.render()) for label in dialog.query(".field-label")] == [
            f"{labels[name]}:" for name in ("what", "noticed_at", "suspected_window_start", "suspected_window_end")]
        await type_text(pilot, "a still")                # too short: the API says so, in its words
        await send_confirmed(pilot)
        await until(pilot, lambda: "What happened" in message(app), what="the API's refusal in the dialog")
        assert app.screen is dialog and dialog.query_one("#what").value == "a still"   # nothing typed is lost
        await type_text(pilot, " of the entrance was shown to a visitor at the desk")
        since = (central.now() - timedelta(minutes=30)).replace(second=0, microsecond=0)
        dialog.query_one("#suspected_window_start").value = local_text(since)   # one end only: said as given
        await send_confirmed(pilot, "Tell the Director now")
        await until(pilot, lambda: "Reported: breach case" in message(app), what="the report sent")
        assert app.screen is live
        [case] = [b for b in central.records.all("breaches") if b["id"] not in before]
        await pilot.press("f2")
        await on(pilot, HomeScreen)
        await pilot.press("b")
        cases = await on(pilot, BreachesScreen)
        await until(pilot, lambda: any(b["id"] == case["id"] for b in cases.breaches), what="her report listed")
        cases.query_one(DataTable).move_cursor(row=[b["id"] for b in cases.breaches].index(case["id"]))
        await pilot.press("enter")
        report = await on(pilot, BreachReportScreen)
        await until(pilot, lambda: f"suspected window: from {local(iso(since))}" in " ".join(
            str(report.query_one("#case-text").render()).split()), what="the window's one end, as given")
    assert case["what"] == "a still of the entrance was shown to a visitor at the desk"
    assert case["reported_by"] == world.people.ids["sue"]
    assert [a["breach"] for a in central.records.search("alerts", kind="breach")][-1] == case["id"]


def release_to_police(world) -> str:
    """A copy in the export register: a release under a court order, after counsel (set up through the API)."""
    people, start = world.people, world.recorded_at
    people.unseal()
    today = world.central.now().date().isoformat()
    instrument = people.call("director", "instrument.record", kind="court_order", reference="CV-2026-31",
                             court="Lucas County District Court", issued_on=today, received_on=today,
                             description="order for entrance footage", cameras=["cam-a"], start=iso(start),
                             end=iso(start + timedelta(seconds=4)))["instrument"]
    people.call("director", "counsel.record", instrument=instrument["id"], counsel="A. Lawyer", consulted_on=today,
                summary="comply, entrance camera only")
    return people.call("director", "release.create", instrument=instrument["id"], cameras=["cam-a"],
                       start=iso(start), end=iso(start + timedelta(seconds=4)),
                       recipient="Chariton Police Department")["export"]["id"]


async def test_the_director_works_a_breach_case_through_its_steps(world):
    central, people = world.central, world.people
    since = central.now() - timedelta(seconds=1)
    export = release_to_police(world)
    case = people.call("sue", "breach.report", what="a printout of a camera still was left on the copier",
                       noticed_at=iso(central.now()), suspected_window_start=iso(since),
                       suspected_window_end=iso(central.now() + timedelta(seconds=1)))["breach"]["id"]
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, *DIRECTOR)
        await open_home_item(pilot, "open_breaches")
        cases = await on(pilot, BreachesScreen)
        await until(pilot, lambda: any(b["id"] == case for b in cases.breaches), what="the case listed")
        cases.query_one(DataTable).move_cursor(row=[b["id"] for b in cases.breaches].index(case))
        await pilot.press("enter")
        screen = await on(pilot, BreachCaseScreen)
        await until(pilot, lambda: screen.steps, what="the case's steps")
        steps = screen.query_one("#steps")

        async def step(name: str):
            steps.move_cursor(row=screen.steps.index(name))
            await pilot.pause(0.05)

        async def record(key: str, **fields):
            """A key of the case, its dialog filled in and sent: back on the case."""
            await pilot.press(key)
            await fill(pilot, **fields)
            await on(pilot, BreachCaseScreen)

        await pilot.press("x")                           # not yet: the API lists what is left (C16)
        await fill(pilot, summary="nothing happened")
        await pilot.press("y")
        await until(pilot, lambda: "Refused (C16)" in message(app) and "investigate" in message(app),
                    what="the refusal to close")
        await discard_typed(pilot)
        await step("check_unauthorised_access")
        await pilot.press("d")                           # done needs its evidence first (C16)
        await fill(pilot, notes="looked at the log")
        await until(pilot, lambda: "Refused (C16)" in message(app), what="the evidence asked for")
        await discard_typed(pilot)
        await pilot.press("enter")                       # the step's work: the audit log over the window
        window = await on(pilot, Fields)
        assert window.query_one("#since").value         # the case's suspected window, to search
        await pilot.press("f5")
        found = await on(pilot, AccessScreen)
        assert "release.create" in {e["action"] for e in found.answer["entries"]}
        assert "audited accesses" in str(found.query_one("#access-text").render())
        await pilot.press("escape")
        await on(pilot, BreachCaseScreen)
        await record("d", notes="only the release to the police")
        await step("retrieve_copies")
        await pilot.press("enter")                       # the export register's copies in the window
        await on(pilot, Fields)
        await pilot.press("f5")
        copies = await on(pilot, CopiesScreen)
        assert [c["id"] for c in copies.copies] == [export] and "to retrieve: " + export in str(
            copies.query_one("#copies-text").render())
        await pilot.press("m")
        await fill(pilot, note="collected back from the police")
        await until(pilot, lambda: copies.copies[0].get("retrieved_at"), what="the copy retrieved")
        await pilot.press("escape")
        await on(pilot, BreachCaseScreen)
        await record("d", notes="the one copy is back")
        await step("contain")
        await record("enter", notes="printout shredded")   # no evidence in the system: recorded as done
        for name in ("investigate", "review_adequacy"):
            await step(name)
            await record("n", notes="a printout, not a system fault")
        await step("notify_individuals")
        await record("enter", who="the patron in the still", how="letter")
        await record("d", notes="letter sent")
        await step("resolve_complaints")
        await record("enter", complainant="the patron", concern="my picture was on the copier",
                     resolution="apologised in person")
        await record("d", notes="resolved informally")
        await pilot.press("x")
        await fill(pilot, summary="printing now needs a PIN")
        assert case in confirm_text(app)
        await pilot.press("y")
        await until(pilot, lambda: "closed" in message(app), what="the case closed")
    closed = central.records.get("breaches", case)
    assert closed["status"] == "closed" and closed["closing_summary"] == "printing now needs a PIN"
    assert {s: v["status"] for s, v in closed["steps"].items()} == {
        "contain": "done", "check_unauthorised_access": "done", "retrieve_copies": "done",
        "investigate": "not_applicable", "review_adequacy": "not_applicable", "notify_individuals": "done",
        "resolve_complaints": "done"}
    assert closed["access_queries"] and closed["copy_checks"][0]["outstanding"] == [export]
    assert closed["notifications"][0]["who"] == "the patron in the still"
    assert closed["complaints"][0]["resolution"] == "apologised in person"
    assert central.records.get("exports", export)["retrieved_at"]
    assert central.audit.query(action_prefix="breach.close")[-1]["actor"] == people.ids["director"]


# After the breach case: its copies in a window are those of release_to_police alone.
async def test_the_director_records_an_instrument_counsel_and_a_release_from_the_releases_screen(world):
    start = world.recorded_at
    app = app_for(world)
    async with app.run_test(size=(80, 25)) as pilot:
        await log_in(pilot, *DIRECTOR)
        await pilot.press("f11")
        await on(pilot, ReleasesScreen)
        await pilot.press("i")                           # before: no key led anywhere from "No releases"
        instruments = await on(pilot, InstrumentsScreen)
        await pilot.press("n")
        dialog = await on(pilot, Fields)
        for field, text in (("reference", "CV-2026-77"), ("court", "Lucas County District Court"),
                            ("issued_on", "2026-02-30"), ("description", "entrance footage of the theft"),
                            ("cameras", "cam-a"), ("start", local_text(start)),
                            ("end", local_text(start + timedelta(minutes=1)))):
            dialog.query_one(f"#{field}").value = text
        await pilot.press("f5")
        await on(pilot, Confirm)
        await pilot.press("y")
        await until(pilot, lambda: "not a valid date" in message(app), what="the date refused in the dialog")
        assert pilot.app.screen is dialog and dialog.query_one("#court").value == "Lucas County District Court"
        dialog.query_one("#issued_on").value = world.central.now().date().isoformat()
        await pilot.press("f5")
        await on(pilot, Confirm)
        await pilot.press("y")
        await on(pilot, InstrumentsScreen)
        await until(pilot, lambda: any(i.get("reference") == "CV-2026-77" for i in instruments.instruments),
                    what="the instrument listed")
        row = [i.get("reference") for i in instruments.instruments].index("CV-2026-77")
        instruments.query_one(DataTable).move_cursor(row=row)
        await pilot.press("l")                           # a release before counsel: refused in its words
        release = await on(pilot, Fields)
        assert release.query_one("#cameras").value == "cam-a"          # the instrument's scope, to narrow
        release.query_one("#recipient").value = "Chariton Police Department"
        await pilot.press("f5")
        await on(pilot, Confirm)
        await pilot.press("y")
        await until(pilot, lambda: "counsel" in message(app) and "C14" in message(app), what="the C14 refusal")
        await discard_typed(pilot)
        await pilot.press("c")
        await fill(pilot, counsel="A. Lawyer", summary="comply, entrance camera only")
        await on(pilot, InstrumentsScreen)
        await pilot.press("l")
        await on(pilot, Fields)
        pilot.app.screen.query_one("#recipient").value = "Chariton Police Department"
        await pilot.press("f5")
        await on(pilot, Confirm)
        await pilot.press("y")
        releases = await on(pilot, ReleasesScreen)
        await until(pilot, lambda: "registered" in message(app), what="the release registered")
        await until(pilot, lambda: releases.releases, what="the release listed")
        cells = releases.query_one(DataTable).get_row_at(0)
        assert "not built" in cells and "not_built" not in cells        # words, not the API's value
    made = world.central.records.search("releases", recipient="Chariton Police Department")
    assert made and made[-1]["cameras"] == ["cam-a"]


# --------------------------------------------------------------------------- suspension notices (C21)


async def test_the_director_makes_a_notice_from_stills_under_a_grant_and_withdraws_it(world):
    central = world.central
    grant = grant_for_sam(world)                         # sam's grant: the Director may use it too
    world.people.unseal()
    until_day = (central.now() + timedelta(days=30)).date().isoformat()
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, *DIRECTOR)
        app.push_screen(ReviewScreen(grant["id"]))
        review = await on(pilot, ReviewScreen)
        await until(pilot, lambda: review.query_one(Timeline).cursor is not None, what="the timeline")
        await pilot.press("right", "right", "n")
        form = await on(pilot, NoticeFormScreen)
        await until(pilot, lambda: form.query_one("#incident").value == grant["incident"],
                    what="the grant's incident filled in")
        await pilot.press("escape")                      # back to the person, a moment later: a second still
        await on(pilot, ReviewScreen)
        await pilot.press("right", "right", "n")
        form = await on(pilot, NoticeFormScreen)
        assert len(form.query("Checkbox")) == 2
        await fill(pilot, description="tall man, red cap, grey backpack", reason="threw a chair at the doors",
                   suspended_until=until_day)
        await on(pilot, Confirm)
        assert until_day in confirm_text(app) and grant["incident"] in confirm_text(app)
        await pilot.press("y")
        notices = await on(pilot, NoticesScreen)
        await until(pilot, lambda: notices.notices, what="the notice listed")
        picture = notices.query_one(Picture)
        await until(pilot, lambda: picture._lines, what="its still drawn")
        assert 10 <= len(picture._lines) <= picture.size.height          # fitted to the screen
        assert "shared with staff" in message(app)
        notice = central.records.get("notices", notices.selected()["id"])
        first = world.recorded_at + timedelta(seconds=2)
        assert [(s["grant"], s["camera"], parse_iso(s["at"])) for s in notice["stills"]] == [
            (grant["id"], "cam-a", first), (grant["id"], "cam-a", first + timedelta(seconds=2))]
        assert notice["suspended_until"] == until_day and notice["incident"] == grant["incident"]
        assert review.notice_stills == []                # made: nothing left picked
        await pilot.press("w")
        await fill(pilot, reason="the suspension was lifted")
        await on(pilot, Confirm)
        await pilot.press("y")
        await until(pilot, lambda: notice["id"] not in [n["id"] for n in notices.notices], what="withdrawn")
    ended = central.records.get("notices", notice["id"])
    assert ended["status"] == "withdrawn" and ended["description"] is None
    assert central.audit.query(action_prefix="notice.withdraw")[-1]["actor"] == world.people.ids["director"]


async def test_staff_see_a_notice_with_its_stills_until_the_suspension_ends(world):
    central, people = world.central, world.people
    grant = grant_for_sam(world)
    people.unseal()
    notice = people.call("director", "notice.create", incident=grant["incident"],
                         description="woman in a green coat, short grey hair", reason="repeated theft of books",
                         suspended_until=(central.now() + timedelta(days=1)).date().isoformat(),
                         stills=[{"grant": grant["id"], "camera": "cam-a",
                                  "at": iso(world.recorded_at + timedelta(seconds=1))}])["notice"]
    app = app_for(world, profile="console")
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sue", PEOPLE["sue"][1])    # holds no grant: notices are for every staff member
        await open_home_item(pilot, "notices")
        screen = await on(pilot, NoticesScreen)
        await until(pilot, lambda: any(n["id"] == notice["id"] for n in screen.notices), what="the notice")
        screen.query_one(DataTable).move_cursor(row=[n["id"] for n in screen.notices].index(notice["id"]))
        # This notice's still: the first row's is drawn already when another notice is in force (the highlight
        # that draws this one is a message after the move).
        await until(pilot, lambda: notice["id"] in str(screen.query_one("#notice-info").render())
                    and screen.query_one(Picture)._lines, what="the notice's still drawn")
        info = str(screen.query_one("#notice-info").render())
        assert "green coat" in info and f"ends {local(notice['expires_at'])}" in info
    shift = parse_iso(notice["expires_at"]) - central.now() + timedelta(minutes=1)
    central.clock.offset += shift
    try:                                                 # the suspension has ended
        app = app_for(world)
        async with app.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, "sue", PEOPLE["sue"][1])
            await pilot.press("n")
            screen = await on(pilot, NoticesScreen)
            await until(pilot, lambda: "notice" in message(app), what="the notices asked for")
            assert notice["id"] not in [n["id"] for n in screen.notices]
    finally:
        central.clock.offset -= shift
    ended = central.records.get("notices", notice["id"])
    assert ended["status"] == "expired" and "pixels" not in ended["stills"][0]


# --------------------------------------------------------------------------- incidents: outcome and close (C18)


async def test_the_director_records_an_outcome_and_closes_the_incident(world):
    central = world.central
    grant = grant_for_sam(world)
    pending = world.people.call("sam", "request.create", incident=grant["incident"], kind="review",
                                cameras=["cam-b"], start=iso(world.recorded_at),
                                end=iso(world.recorded_at + timedelta(seconds=5)),
                                reason="and the other side of the doors")["request"]
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, *DIRECTOR)
        await pilot.press("f4")
        incidents = await on(pilot, IncidentsScreen)
        await until(pilot, lambda: incidents.incidents, what="the incidents")
        incidents.query_one(DataTable).move_cursor(row=[i["id"] for i in incidents.incidents].index(grant["incident"]))
        await pilot.press("enter")
        await on(pilot, IncidentDetailScreen)
        await pilot.press("c")                           # no outcome yet: the API refuses (C18)
        await send_confirmed(pilot)
        await until(pilot, lambda: "Refused (C18)" in message(app), what="the refusal to close")
        await pilot.press("escape")
        await pilot.press("o")
        await on(pilot, Fields)
        await pilot.press("down", "enter")               # corrective action
        await type_text(pilot, "the patron admitted it")
        await pilot.press("tab")
        await type_text(pilot, "a letter and a month's suspension")
        await send_confirmed(pilot, "Corrective action you approve: a letter")
        await until(pilot, lambda: "Outcome recorded" in message(app), what="the outcome recorded")
        await pilot.press("c")
        await send_confirmed(pilot, "pending requests are cancelled")
        await until(pilot, lambda: "Incident closed" in message(app), what="the incident closed")
        assert grant["id"] in message(app) and pending["id"] in message(app)
    incident = central.records.get("incidents", grant["incident"])
    assert incident["status"] == "closed" and incident["outcome"]["outcome"] == "corrective_action"
    assert incident["outcome"]["corrective_action"] == "a letter and a month's suspension"
    assert central.records.get("grants", grant["id"])["revoked_at"]
    assert central.records.get("requests", pending["id"])["status"] == "cancelled"


# --------------------------------------------------------------------------- imminent danger: the report it owes (C19)


async def test_an_imminent_danger_use_is_linked_to_an_incident_already_filed(world):
    central, people = world.central, world.people
    people.call("sam", "imminent.invoke", reason="a man threatened staff at the desk", cameras=["cam-a"])
    filed = people.call("sam", "incident.create", grounds="criminal_activity", occurred_at=iso(central.now()),
                        location="front desk", description="a man threatened staff with a bottle at the desk",
                        attestation=True)["incident"]
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sam", PEOPLE["sam"][1])
        await open_home_item(pilot, "incident_owed")
        owed = await on(pilot, OwedReportScreen)
        await until(pilot, lambda: owed.incidents, what="the incidents to choose from")
        owed.query_one(DataTable).move_cursor(row=[i["id"] for i in owed.incidents].index(filed["id"]))
        await pilot.press("enter")
        await on(pilot, Confirm)
        assert owed.use_id in confirm_text(app) and filed["id"] in confirm_text(app)
        await pilot.press("y")
        detail = await on(pilot, IncidentDetailScreen)
        assert detail.incident_id == filed["id"]
        text = detail.query_one("#incident-text")
        await until(pilot, lambda: "imminent danger" in str(text.render()), what="the use among its requests")
        assert "_" not in str(text.render())            # words, not the API's values (imminent_danger, self_granted)
    use = central.records.get("requests", owed.use_id)
    assert use["incident"] == filed["id"]
    assert central.records.get("grants", use["grant"])["incident"] == filed["id"]


# --------------------------------------------------------------------------- forms checked before they are confirmed


async def test_the_request_form_says_what_is_wrong_before_the_confirmation_and_keeps_what_was_typed(world):
    central = world.central
    incident = pending_request(world)["incident"]
    before = len(central.records.all("requests"))
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sam", PEOPLE["sam"][1])
        await pilot.press("f4")
        incidents = await on(pilot, IncidentsScreen)
        await until(pilot, lambda: incidents.incidents, what="the incidents")
        incidents.query_one(DataTable).move_cursor(row=[i["id"] for i in incidents.incidents].index(incident))
        await pilot.press("enter")
        await on(pilot, IncidentDetailScreen)
        await pilot.press("q")
        form = await on(pilot, RequestFormScreen)
        await fill(pilot, cameras="cam-a", start=local_text(world.recorded_at - timedelta(minutes=1)),
                   end=local_text(world.recorded_at + timedelta(minutes=1)), reason="see")   # F5 at once
        await until(pilot, lambda: '"Reason"' in message(app), what="the short reason refused in the form")
        assert app.screen is form and form.query_one("#reason").value == "see"   # no confirmation, nothing lost
        form.query_one("#reason").value = "see who left the bag"
        await send_confirmed(pilot, "see who left the bag")
        await until(pilot, lambda: "waits for the Director" in message(app), what="the request sent")
    assert len(central.records.all("requests")) == before + 1


async def test_a_time_that_is_not_one_keeps_the_cursor_in_its_field(world):
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sue", PEOPLE["sue"][1])
        await pilot.press("f12")
        dialog = await on(pilot, Fields)
        await type_text(pilot, "a still of the entrance was shown to a visitor")
        await pilot.press("enter")
        dialog.query_one("#noticed_at").value = ""
        await type_text(pilot, "25:99")
        await pilot.press("enter")                       # not on to the next field: this one is wrong
        assert "'25:99' is not a time" in message(app) and app.focused.id == "noticed_at"
        dialog.query_one("#noticed_at").value = "10:00"
        await pilot.press("enter")
        await type_text(pilot, "yesterday")
        await pilot.press("tab")
        await pilot.press("f5")                          # sent from another field: the cursor goes to the wrong one
        assert "'yesterday' is not a time" in message(app) and app.focused.id == "suspected_window_start"
        assert app.screen is dialog


async def test_escape_on_a_report_with_text_typed_asks_before_it_is_discarded(world):
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        incidents, _ = await staff_opens_the_incident_form(pilot)
        await pilot.press("escape")                      # nothing typed: nothing to ask
        assert await on(pilot, IncidentsScreen) is incidents
        await pilot.press("n")
        form = await on(pilot, IncidentFormScreen)
        await pilot.press("tab", "tab")
        await type_text(pilot, "returns desk")
        await pilot.press("escape")
        await on(pilot, Confirm)
        assert app.screen.title_text == "Discard this report?"
        await pilot.press("n")
        assert await on(pilot, IncidentFormScreen) is form and form.query_one("#where").value == "returns desk"
        await pilot.press("escape")
        await on(pilot, Confirm)
        await pilot.press("y")
        assert await on(pilot, IncidentsScreen) is incidents


async def test_f5_pressed_twice_files_one_report_and_sends_one_request(world):
    """A second F5 while the first is on its way does nothing: before, it filed the report twice, and
    stacked two confirmations of a request, the second of which was left over the sent form."""
    central, sam = world.central, world.people.ids["sam"]
    filed = {i["id"] for i in central.records.all("incidents")}
    asked = {r["id"] for r in central.records.all("requests")}
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        _, form = await staff_opens_the_incident_form(pilot)
        form.query_one("#when").value = local_text(world.recorded_at)
        form.query_one("#where").value = "the stairs"
        form.query_one("#description").text = "a patron pushed another down the stairs"
        form.query_one("#attest").value = True
        await press_twice_at_once(pilot, "f5")
        detail = await on(pilot, IncidentDetailScreen)
        await pilot.pause(1.0)                           # time for a second report to arrive, if one was sent
        assert [i["id"] for i in central.records.all("incidents")
                if i["id"] not in filed and i["filed_by"] == sam] == [detail.incident_id]
        await pilot.press("q")
        form = await on(pilot, RequestFormScreen)
        form.query_one("#cameras").value = "cam-a"
        form.query_one("#start").value = local_text(world.recorded_at)
        form.query_one("#end").value = local_text(world.recorded_at + timedelta(minutes=1))
        form.query_one("#reason").value = "see who pushed whom on the stairs"
        await press_twice_at_once(pilot, "f5")
        await on(pilot, Confirm)
        await pilot.pause(0.5)                           # a second confirmation, if one was coming
        await pilot.press("y")
        assert await on(pilot, IncidentDetailScreen) is detail
        await until(pilot, lambda: "waits for the Director" in message(app), what="the request sent")
    assert len([r for r in central.records.all("requests") if r["id"] not in asked]) == 1


async def test_a_dialog_or_form_with_text_typed_asks_before_escape_or_an_f_key_discards_it(world):
    """Before: Escape on a dialog of fields (the breach report, an instrument...) threw away what was
    typed without a word, and an F-key on a form left it, and from a confirmation left both."""
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        _, form = await staff_opens_the_incident_form(pilot)
        form.query_one("#where").value = "returns desk"
        await pilot.press("f7")                          # another screen: it asks first, as Escape does
        await on(pilot, Confirm)
        assert app.screen.title_text == "Discard this report?"
        await pilot.press("f3")                          # a question on screen is answered first
        await pilot.pause(0.3)
        assert isinstance(app.screen, Confirm)
        await pilot.press("n")
        assert await on(pilot, IncidentFormScreen) is form and form.query_one("#where").value == "returns desk"
        await pilot.press("f12")
        await on(pilot, Fields)
        await pilot.press("escape")                      # nothing typed but what it offered: it closes
        assert await on(pilot, IncidentFormScreen) is form
        await pilot.press("f12")
        dialog = await on(pilot, Fields)
        await type_text(pilot, "a still")
        await pilot.press("escape")
        await on(pilot, Confirm)
        await pilot.press("n")
        assert await on(pilot, Fields) is dialog and dialog.query_one("#what").value == "a still"
        await pilot.press("escape")
        await on(pilot, Confirm)
        await pilot.press("y")
        assert await on(pilot, IncidentFormScreen) is form
        await pilot.press("f7")
        await on(pilot, Confirm)
        await pilot.press("y")
        await on(pilot, LiveScreen)


def it_staff(world) -> None:
    """ivy, of IT staff, with her own passphrase (made the first time a test needs her)."""
    people = world.people
    if "ivy" not in people.ids:
        temporary = "temporary-ivy-1"
        world.central.call("user.create", {"name": "ivy", "role": "it", "passphrase": temporary},
                           people.tokens["director"])
        token = world.central.call("session.login", {"user": "ivy", "passphrase": temporary})["token"]
        world.central.call("user.change_passphrase", {"old": temporary, "new": PEOPLE["ivy"][1]}, token)
        people.login("ivy")


async def test_it_staff_are_not_offered_the_danger_key_and_are_told_the_clause_of_a_refusal(world):
    """IT never sees pictures (C8) and may not invoke imminent danger: F9 was shown to IT and did nothing.
    A refusal by role names its clause, as every other refusal does."""
    it_staff(world)
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        home = await log_in(pilot, "ivy", PEOPLE["ivy"][1])
        await until(pilot, lambda: home.items, what="IT's home")
        assert "f9" not in app.active_bindings
        await pilot.press("f1")
        keys = (await on(pilot, HelpScreen)).query_one("#keys")
        assert "F9" not in [str(keys.get_row_at(n)[0]).split(",")[0] for n in range(keys.row_count)]
        await pilot.press("escape")
        await pilot.press("f4")
        await until(pilot, lambda: "Refused (C8): only staff or the Director may use incident.list" in message(app),
                    what="the refusal with its clause")


async def test_the_build_starts_once_and_shows_its_progress_not_an_older_refusal(world, tmp_path):
    release_to_police(world)
    release = max(r["id"] for r in world.central.records.all("releases"))
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, *DIRECTOR)
        await pilot.press("f11")
        releases = await on(pilot, ReleasesScreen)
        await until(pilot, lambda: any(r["id"] == release for r in releases.releases), what="the release listed")
        releases.query_one(DataTable).move_cursor(row=[r["id"] for r in releases.releases].index(release))
        await pilot.press("b")
        build = await on(pilot, BuildScreen)
        build.query_one("#to").value = str(tmp_path / "not-mounted")
        build.query_one("#medium").value = "USB stick 4411"
        build.query_one("#taken-by").value = "Det. R. Lane"
        await pilot.press("escape")                      # what was typed is not thrown away unasked
        await on(pilot, Confirm)
        await pilot.press("n")
        assert await on(pilot, BuildScreen) is build
        await pilot.press("f5")
        await until(pilot, lambda: "not a folder" in message(app), what="the destination refused")
        build.query_one("#to").value = str(tmp_path)
        await press_twice_at_once(pilot, "f5")
        await until(pilot, lambda: build.seen and "built" in build.seen[-1], timeout=60, what="the build to end")
        assert "not a folder" not in message(app) and "Building" in message(app)
        await pilot.pause(1.0)                           # a second build, if one was started, ends too
        await pilot.press("escape")                      # built: nothing to lose, back at once
        await on(pilot, ReleasesScreen)
    assert len(list(tmp_path.iterdir())) == 1


async def test_the_notices_screen_shows_no_key_for_a_notice_when_there_is_none(world):
    people = world.people
    for notice in people.call("director", "notice.list")["notices"]:   # what earlier tests left in force
        people.call("director", "notice.withdraw", notice=notice["id"], reason="ended early for this test")
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, *DIRECTOR)
        await pilot.press("n")
        await on(pilot, NoticesScreen)
        await until(pilot, lambda: "No suspension notice" in message(app), what="the notices asked for")
        assert "s" not in shown_keys(app) and "w" not in shown_keys(app)   # they would do nothing
        assert "n" in shown_keys(app)


async def test_director_approves_where_a_camera_points_from_its_view_after_a_refusal(world, tmp_path):
    """The home item brings the Director to a new camera; she sees its own view, is refused (C5: no entrance
    sign), rejects it, and approves it once the sign is on record. IT see the camera and no such key."""
    central, people = world.central, world.people
    it_staff(world)
    identity = new_node(tmp_path, central, world.serving.url, "cam-door")   # a name no other test uses
    enrol(people, identity)                                # by IT: pending placement, records nothing (C6)
    view = pattern(128, 72)
    assert send_view(ControlClient(identity), view) == 200  # the node's own view, over its control channel
    assert not people.call("director", "signage.list")["entrance_signed"]
    taken = local(central.nodes.snapshots["cam-door"]["at"], seconds=True)
    note = "door and street only, no desk"
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "ivy", PEOPLE["ivy"][1])
        await open_home_item(pilot, "cameras_pending")
        cameras = await on(pilot, CamerasScreen)
        await until(pilot, lambda: any(c["id"] == "cam-door" for c in cameras.cameras), what="the camera listed")
        cameras.query_one(DataTable).move_cursor(row=[c["id"] for c in cameras.cameras].index("cam-door"))
        await until(pilot, lambda: cameras.selected()["id"] == "cam-door", what="the cursor on the camera")
        assert "p" not in shown_keys(app)
        await pilot.press("enter", "p", "f1")             # nothing for IT, who never see a camera's view (C8)
        keys = (await on(pilot, HelpScreen)).query_one("#keys")
        offered = [keys.coordinate_to_cell_key((n, 0)).row_key.value for n in range(keys.row_count)]
        assert "refresh" in offered and "placement" not in offered
        assert not any(isinstance(screen, PlacementScreen) for screen in app.screen_stack)
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, *DIRECTOR)
        await open_home_item(pilot, "cameras_pending")
        cameras = await on(pilot, CamerasScreen)
        await until(pilot, lambda: "Enter or P: the view of cam-door" in message(app), what="the camera waiting")
        assert "p" in shown_keys(app)
        await pilot.press("enter")
        placement = await on(pilot, PlacementScreen)
        picture = placement.query_one(Picture)
        await until(pilot, lambda: picture._lines, what="the camera's view drawn")
        assert picture._image == (view, 128, 72)           # the very pixels the node sent
        drawn = [picture.render_line(y) for y in range(picture.size.height)]
        assert set("".join(line.text for line in drawn).strip()) == {HALF}
        assert len({seg.style for line in drawn for seg in line if seg.style}) > 10   # a picture, not a blank
        info = str(placement.query_one("#placement-info").render())
        assert all(text in info for text in ("Main doors", "Category: entrance", "pending placement",
                                             f"View taken {taken}", "Masks: none (of 1280x720)"))
        await pilot.press("a")
        dialog = await on(pilot, Fields)
        await type_text(pilot, note)
        await send_confirmed(pilot, "cam-door", "Main doors", note)
        await until(pilot, lambda: "Refused (C5): no sign at the library entrance is on record" in message(app),
                    what="the refusal with its clause")
        assert app.screen is dialog and dialog.query_one("#note").value == note        # nothing typed is lost
        assert central.records.get("cameras", "cam-door")["status"] == "pending_placement"
        await discard_typed(pilot)
        await on(pilot, PlacementScreen)
        await pilot.press("d")
        await on(pilot, Fields)
        await type_text(pilot, "it shows the returns desk")
        await send_confirmed(pilot, "Reject", "cam-door")
        await on(pilot, CamerasScreen)
        await until(pilot, lambda: cameras.query_one(DataTable).get_row("cam-door")[2] == "rejected",
                    what="the new state listed")
        assert "cam-door rejected" in message(app)
        assert central.records.get("cameras", "cam-door")["status"] == "rejected"
        post_entrance_sign(people)                         # IT records the sign at the entrance (C5)
        await pilot.press("enter")                         # re-aimed: the Director looks again
        placement = await on(pilot, PlacementScreen)
        await until(pilot, lambda: placement.query_one(Picture)._lines, what="the view again")
        await pilot.press("a")
        await on(pilot, Fields)
        await type_text(pilot, note)
        await send_confirmed(pilot, note)
        await on(pilot, CamerasScreen)
        await until(pilot, lambda: cameras.query_one(DataTable).get_row("cam-door")[2] == "recording",
                    what="the approved camera listed")
        assert "cam-door approved" in message(app)
    cam = central.records.get("cameras", "cam-door")
    assert cam["status"] == "approved" and cam["placement"]["note"] == note
    director = people.ids["director"]
    [approval] = [e for e in central.audit.query(action_prefix="camera.approve_placement") if e["target"] == "cam-door"]
    assert (approval["actor"], approval["why"], approval["details"]["previous_status"]) == (director, note, "rejected")
    [rejection] = [e for e in central.audit.query(action_prefix="camera.reject_placement") if e["target"] == "cam-door"]
    assert rejection["actor"] == director and rejection["why"] == "it shows the returns desk"
    views = [e for e in central.audit.query(action_prefix="camera.snapshot_view") if e["target"] == "cam-door"]
    assert [e["actor"] for e in views] == [director, director]   # once each time she opened it
    people.call("director", "camera.retire", camera="cam-door", why="a test camera: later tests see no camera "
                "approved and silent")
