"""One owner per data directory (issue 6, item 1), with real processes.

A second demo, node or central on a directory in use refuses at once, names the
process that holds it, and touches nothing: the first one loses no footage.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from appliance.datalock import DirectoryInUse, lock_data_dir, probe
from appliance.formats.chain import check_segments
from conftest import ROOT
from processes import (CLI, archive_files, descendants, kill_tree, processes_mentioning, start_headless_demo,
                       wait_for)


def refusal(args: list[str]) -> str:
    """Run a command that must refuse at once; its error message."""
    done = subprocess.run(CLI + args, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    return done.stderr


def pid_of(parent: int, command_part: str) -> int:
    found = [pid for pid, (_start, cmd) in descendants(parent).items() if command_part in cmd]
    assert len(found) == 1, descendants(parent)
    return found[0]


@pytest.mark.slow
def test_second_demo_node_or_central_on_a_busy_data_directory_refuses_and_the_first_loses_nothing(tmp_path):
    data = tmp_path / "demo"
    first = start_headless_demo(data, seconds=24, cameras=1, segment_seconds=3, out=tmp_path / "first.out")
    try:
        wait_for(lambda: archive_files(data / "central", "entrance"), 90, "the first demo's first segment")
        node_pid = pid_of(first.pid, "node run")
        central_pid = pid_of(first.pid, "central serve")
        logs = {p.name: p.read_bytes() for p in data.glob("*.log")}

        error = refusal(["demo", "--headless", "--seconds", "5", "--cameras", "1", "--data", str(data)])
        assert f"{data} is in use by a demo (pid {first.pid}: " in error and "demo --headless" in error
        error = refusal(["--config", str(data / "nodes" / "entrance.toml"), "node", "run"])
        assert f"{data / 'nodes' / 'entrance'} is in use by a camera node (pid {node_pid}: " in error
        error = refusal(["central", "serve", "--data", str(data / "central"), "--port", "0"])
        assert f"{data / 'central'} is in use by a central (pid {central_pid}: " in error

        # The refused demo started nothing: no process of its own, no line in the first one's logs.
        assert processes_mentioning(str(data)) <= {first.pid, *descendants(first.pid)}
        assert (data / "demo.lock").read_text().startswith(f"{first.pid} demo: ")
        for name, before in logs.items():
            assert b"in use" not in (data / name).read_bytes()[len(before):], name
        assert first.wait(120) == 0
    finally:
        if first.poll() is None:
            kill_tree(first)
    summary = (tmp_path / "first.out").read_text().strip().splitlines()[-1]
    segments, verified, gaps = map(int, re.fullmatch(
        r"demo: cameras=1 segments=(\d+) verified=(\d+) gaps=(\d+)", summary).groups())
    assert segments >= 3 and verified == segments and gaps == 0
    node_dir = data / "nodes" / "entrance"
    assert not (node_dir / "loss.jsonl").exists(), (node_dir / "loss.jsonl").read_text()
    assert not list((node_dir / "spool").rglob("*.cseg*")), "every segment was delivered"
    check = check_segments(archive_files(data / "central", "entrance"))
    assert check.ok and len(check.verified) == segments


def test_a_data_directory_lock_names_its_holder_and_dies_with_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]);"
                               "from appliance.datalock import lock_data_dir;"
                               "lock = lock_data_dir(sys.argv[2], 'node.lock', 'camera node');"
                               "print('locked', flush=True); time.sleep(60)", str(ROOT), str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(DirectoryInUse, match=rf"in use by a camera node \(pid {holder.pid}: \S*python\S* -c"):
            lock_data_dir(tmp_path, "node.lock", "camera node")
        with pytest.raises(DirectoryInUse, match=rf"pid {holder.pid}"):
            probe(tmp_path, "node.lock", "demo")
        assert (tmp_path / "node.lock").read_text().startswith(f"{holder.pid} camera node: ")  # not wiped
        holder.kill()                            # kill -9: the kernel lets go of the lock
        holder.wait()
        with lock_data_dir(tmp_path, "node.lock", "camera node"):
            assert (tmp_path / "node.lock").read_text().startswith(f"{os.getpid()} camera node: ")
        probe(tmp_path / "nowhere", "node.lock", "demo")    # nothing to probe: nothing created
        assert not (tmp_path / "nowhere").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_second_node_on_a_card_still_enrolling_refuses_at_once(tmp_path):
    """First boot: the node enrols before it records. Before, it took its data directory's lock only
    after enrolling, so a second `node run` on the same card (systemd's and one started by hand)
    enrolled too: started together, each made its own key and the later one overwrote node.key,
    leaving the enrolled node signing with a key the central does not know."""
    data = tmp_path / "node"
    data.mkdir()
    (data / "invite").write_text("7K3Q-9XWP-2DMF\n")
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\nname = "entrance"\ndata_dir = "{data}"\ncentral_url = "http://127.0.0.1:9"\n')
    first = subprocess.Popen(CLI + ["--config", str(config), "node", "run"], stdout=subprocess.DEVNULL,
                             stderr=open(tmp_path / "first.log", "wb"), start_new_session=True)
    try:
        wait_for(lambda: b"enrolment:" in (tmp_path / "first.log").read_bytes(), 30, "the first node enrolling")
        key = (data / "node.key").read_bytes()
        error = refusal(["--config", str(config), "node", "run"])
        assert f"{data} is in use by a camera node (pid {first.pid}: " in error, error
        assert (data / "node.key").read_bytes() == key and (data / "invite").exists()
    finally:
        kill_tree(first)
