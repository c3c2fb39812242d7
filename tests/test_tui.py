"""The terminal UI against a real central serving its API on a Unix socket.

Pilot drives the real Textual app at 80x24; a second test runs it in tmux with
TERM=linux (16 colours, the Linux console) and types at it like a person.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from conftest import DIRECTOR, enrol_camera_record
from tui.app import CamerasScreen, CustodianApp, LoginScreen, PolicyScreen


async def wait_for_screen(pilot, kind, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if isinstance(pilot.app.screen, kind):
            return pilot.app.screen
        await pilot.pause(0.05)
    raise AssertionError(f"never reached {kind.__name__}; on {type(pilot.app.screen).__name__}")


async def type_text(pilot, text):
    for ch in text:
        await pilot.press(ch if ch != "-" else "minus")


async def test_login_acknowledge_policy_and_see_cameras(serving, central):
    enrol_camera_record(central, "entrance", "11" * 32)
    app = CustodianApp(str(central.paths.data / "api.sock"))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, LoginScreen)
        await type_text(pilot, DIRECTOR[0])
        await pilot.press("enter")
        await type_text(pilot, "wrong-passphrase")
        await pilot.press("enter")
        await pilot.pause(0.5)
        assert "wrong passphrase" in str(app.screen.query_one("#login-error").render())
        await type_text(pilot, DIRECTOR[1])
        await pilot.press("enter")
        await wait_for_screen(pilot, PolicyScreen)
        await pilot.press("a")
        screen = await wait_for_screen(pilot, CamerasScreen)
        deadline = time.monotonic() + 10
        while screen.query_one("DataTable").row_count == 0 and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert screen.query_one("DataTable").row_count == 1
        # A camera enrolled by pairing code shows its fingerprint, for IT to compare with the node's log.
        central.records.update("cameras", "entrance", {"pairing": {"fingerprint": "3F9A-7C21-0B4E-55D2"}})
        await pilot.press("r")
        deadline = time.monotonic() + 10
        while "3F9A-7C21-0B4E-55D2" not in str(screen.query_one("#detail").render()) \
                and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert str(screen.query_one("#detail").render()) == "entrance: pairing fingerprint 3F9A-7C21-0B4E-55D2"
    entries = central.audit.query(action_prefix="policy.acknowledge")
    assert entries, "the acknowledgement went through the API and was audited"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by make test")
def test_tui_in_a_real_linux_console_terminal(serving, central, tmp_path):
    enrol_camera_record(central, "entrance", "11" * 32)
    session = f"custodian-test-{tmp_path.name}"[:40]
    sock = str(central.paths.data / "api.sock")
    cmd = f"TERM=linux {sys.executable} -m appliance.cli tui --socket {sock}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", cmd], check=True)

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                              text=True).stdout

    def wait(text, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in screen():
                return
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared:\n{screen()}")

    try:
        wait("user name")
        subprocess.run(["tmux", "send-keys", "-t", session, DIRECTOR[0], "Enter"], check=True)
        time.sleep(0.5)  # a person's pause between the two fields
        subprocess.run(["tmux", "send-keys", "-t", session, DIRECTOR[1], "Enter"], check=True)
        wait("acknowledge")
        subprocess.run(["tmux", "send-keys", "-t", session, "a"], check=True)
        wait("archive: SEALED")
        wait("entrance")
        text = screen()
        # The Linux console font lacks rounded corners and eighth blocks: none may appear.
        assert not set(text) & set("╭╮╰╯▁▂▃▅▆▇▉▊▋▍▎▏▕⭘"), text
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
