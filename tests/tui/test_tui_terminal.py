"""`custodian tui` in a real terminal (tmux, 80x24, a private tmux server), typed at like a person.

Once as the Linux console (TERM=linux: 16 colours, the console font) and once as a
serial terminal (TERM=vt220: no colour, ASCII): log in as staff, file an incident,
ask to review recordings, and read back with capture-pane that a person sees the
confirmation. On the console no character may fall outside the console font (its
cp437 set); on the serial terminal none outside printable ASCII.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from conftest import PEOPLE
from test_tui import local_text, make_world

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by make test")]

CONSOLE_FONT = set(bytes(range(32, 256)).decode("cp437")) | {" ", "\n"}   # written here, not read from tui/
ASCII = {chr(c) for c in range(32, 127)} | {"\n"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w, patch = make_world(tmp_path_factory, "terminal")
    yield w
    w.serving.stop()
    w.central.close()
    patch.undo()


class Terminal:
    """One tmux server of our own (other helpers use tmux on this machine), one 80x24 window."""

    def __init__(self, name: str, command: str):
        self.tmux = ["tmux", "-L", name]
        subprocess.run(self.tmux + ["new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", command], check=True)

    def screen(self) -> str:
        return subprocess.run(self.tmux + ["capture-pane", "-p", "-t", "tui"], capture_output=True,
                              text=True).stdout

    def keys(self, *keys: str, literal: bool = False) -> None:
        for key in keys:   # one at a time, at a person's pace: a focus change lands before the next key
            subprocess.run(self.tmux + ["send-keys", "-t", "tui"] + (["-l"] if literal else []) + [key], check=True)
            time.sleep(0.25)

    def type(self, text: str) -> None:
        self.keys(text, literal=True)

    def wait(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(self.tmux + ["kill-server"], capture_output=True)


def file_and_request(term: Terminal, world, seen: list[str]) -> str:
    term.wait("user name")
    term.type("sam")
    term.keys("Enter")
    term.type(PEOPLE["sam"][1])
    seen.append(term.wait("*" * len(PEOPLE["sam"][1])))   # the passphrase's mask, in the terminal's font
    term.keys("Enter")
    seen.append(term.wait("What needs your attention"))
    term.keys("C-p")                                        # the command palette draws glyphs of its own
    seen.append(term.wait("Search"))
    term.keys("Escape")
    term.keys("F4")
    seen.append(term.wait("Incident"))
    term.keys("n")
    seen.append(term.wait("I attest"))
    term.keys("End", "Tab")
    term.type(local_text(world.recorded_at + timedelta(seconds=2)))
    term.keys("Tab")
    term.type("returns desk")
    term.keys("Tab")
    term.type("a patron kicked the returns box until it broke")
    term.keys("Tab", "Space")
    seen.append(term.wait("Ready to send"))
    term.keys("F5")
    seen.append(term.wait("Requests: none"))
    term.keys("q")
    seen.append(term.wait("Review recordings"))
    term.keys("Home", "Tab")
    term.type("cam-a")
    term.keys("Tab")
    term.type(local_text(world.recorded_at - timedelta(minutes=1)))
    term.keys("Tab")
    term.type(local_text(world.recorded_at + timedelta(minutes=2)))
    term.keys("Tab")
    term.type("see who broke the returns box")
    seen.append(term.wait("Ready to send"))
    term.keys("F5")
    confirmation = term.wait("Ask the Director to review the recordings of cam-a")
    seen.append(confirmation)
    term.keys("y")
    seen.append(term.wait("waits for the Director"))
    return confirmation


@pytest.mark.parametrize("term_name, allowed", [("linux", CONSOLE_FONT), ("vt220", ASCII)])
def test_staff_files_and_requests_in_a_real_terminal(world, tmp_path, term_name, allowed):
    requests_before = len(world.central.records.all("requests"))
    command = f"TERM={term_name} {sys.executable} -m appliance.cli tui --socket {world.socket}"
    # The pid too: every pytest run names its temporary directories alike, and other runs share this machine.
    term = Terminal(f"custodian-tui-{term_name}-{os.getpid()}-{tmp_path.name}"[:60], command)
    seen: list[str] = []
    try:
        confirmation = file_and_request(term, world, seen)
    finally:
        term.close()
    assert "Send this request?" in confirmation and "Yes" not in confirmation.split("Send this request?")[0]
    outside = {ch for screen in seen for ch in screen} - allowed
    assert not outside, f"{term_name}: characters the terminal cannot show: {sorted(outside)}"
    assert len(world.central.records.all("requests")) == requests_before + 1
