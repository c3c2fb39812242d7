"""Helpers for tests that run real processes: waiting, process trees, a headless demo."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CLI = [sys.executable, "-m", "appliance.cli"]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition", step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def archive_files(central_dir: Path, camera: str) -> list[Path]:
    return sorted((Path(central_dir) / "archive" / camera).rglob("*.cseg"), key=lambda p: p.name)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()   # the command name may hold spaces
    if fields[0] == "Z":
        return None                                 # a zombie has exited
    return int(fields[1]), int(fields[19])


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def descendants(pid: int) -> dict[int, tuple[int, str]]:
    """Every live process below `pid`: {pid: (start time, command)}."""
    parents: dict[int, list[int]] = {}
    info: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                parents.setdefault(st[0], []).append(int(entry))
                info[int(entry)] = (st[1], "")
    found: dict[int, tuple[int, str]] = {}
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        found[child] = (info[child][0], command_of(child))
        todo.extend(parents.get(child, []))
    return found


def process_tree(pid: int) -> dict[int, tuple[int, str]]:
    """`pid` itself and every live process below it."""
    st = _stat(pid)
    return ({pid: (st[1], command_of(pid))} if st else {}) | descendants(pid)


def processes_mentioning(text: str) -> set[int]:
    """Live processes whose command line holds `text` (a data directory, say)."""
    return {int(e) for e in os.listdir("/proc") if e.isdigit() and text in command_of(int(e))
            and _stat(int(e)) is not None}


def still_running(processes: dict[int, tuple[int, str]]) -> list[str]:
    """Those of `processes` still alive (the same process: pid and start time)."""
    alive = []
    for pid, (started, command) in processes.items():
        st = _stat(pid)
        if st is not None and st[1] == started:
            alive.append(f"{pid} {command}")
    return alive


def start_headless_demo(data: Path, seconds: float, cameras: int = 1, segment_seconds: int = 3,
                        out: Path | None = None) -> subprocess.Popen:
    """`custodian demo --headless` as its own process group (so a test can signal it alone)."""
    out = out or Path(data).with_name(Path(data).name + "-demo.out")
    return subprocess.Popen(CLI + ["demo", "--headless", "--seconds", str(seconds), "--cameras", str(cameras),
                                   "--segment-seconds", str(segment_seconds), "--data", str(data)],
                            stdout=open(out, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def kill_tree(proc: subprocess.Popen) -> None:
    """Clean-up after a failed test: the process and everything it started."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
