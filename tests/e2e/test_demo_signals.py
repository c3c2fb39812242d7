"""The demo stops everything it started when its terminal closes or it is told to (issue 6, item 10).

Real processes: a demo (central, node, ffmpeg) gets SIGHUP or SIGTERM, or the tmux
session running it is killed; afterwards no process it started is left, the nodes
closed their segments properly, and the data directory is free again.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

from appliance.datalock import DEMO_LOCK, lock_data_dir
from appliance.formats.chain import check_segments
from conftest import ROOT
from processes import (archive_files, descendants, kill_tree, process_tree, processes_mentioning,
                       start_headless_demo, still_running, wait_for)

pytestmark = pytest.mark.slow


def running_demo_tree(root_pid: int, data) -> dict[int, tuple[int, str]]:
    """Once the demo records: every process under it (central, node, the node's ffmpeg)."""
    def ready():
        tree = descendants(root_pid)
        commands = [cmd for _start, cmd in tree.values()]
        recording = archive_files(data / "central", "entrance")
        if recording and any("central serve" in c for c in commands) and any("node run" in c for c in commands) \
                and any(c.startswith("ffmpeg") for c in commands):
            return tree
        return None
    return wait_for(ready, 120, "the demo to record")


def assert_stopped_cleanly(data) -> None:
    assert processes_mentioning(str(data)) == set()
    node_dir = data / "nodes" / "entrance"
    assert not list((node_dir / "spool").glob("*.part")), "the node closed its open segment"
    assert not (node_dir / "loss.jsonl").exists()
    check = check_segments(archive_files(data / "central", "entrance"))
    assert check.ok, (check.breaks, check.gaps, check.truncated)
    with lock_data_dir(data, DEMO_LOCK, "demo"):     # the data directory is free again
        pass


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_a_signalled_demo_stops_everything_it_started(tmp_path, sig):
    data = tmp_path / "demo"
    demo = start_headless_demo(data, seconds=600, cameras=1, segment_seconds=2)
    try:
        tree = running_demo_tree(demo.pid, data)
        demo.send_signal(sig)
        assert demo.wait(90) == 128 + sig
        assert still_running(tree) == []
    finally:
        if demo.poll() is None:
            kill_tree(demo)
    assert_stopped_cleanly(data)


@pytest.mark.skipif(not shutil.which("tmux"), reason="needs tmux")
def test_closing_the_terminal_of_a_demo_with_its_ui_stops_everything_it_started(tmp_path):
    data = tmp_path / "demo"
    session = f"fix-node-demo-{uuid.uuid4().hex[:8]}"
    command = f"{sys.executable} -m appliance.cli demo --cameras 1 --segment-seconds 2 --data {data}"
    env = dict(os.environ, TERM="xterm-256color")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", command],
                   check=True, env=env, cwd=ROOT)
    try:
        demo_pid = wait_for(lambda: next(iter(processes_mentioning(f"demo --cameras 1 --segment-seconds 2 "
                                                                   f"--data {data}")), None), 30, "the demo")
        running_demo_tree(demo_pid, data)
        tree = process_tree(demo_pid)
        subprocess.run(["tmux", "kill-session", "-t", session], check=True)   # the window is closed
        wait_for(lambda: not still_running(tree), 90, "everything the demo started to stop")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    assert_stopped_cleanly(data)
