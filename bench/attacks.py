"""Attack loops for docs/RELIABILITY.md: real processes, repeated, and what was lost.

    python -m bench.attacks kill-node --times 20      # kill -9 a recording node, restart it
    python -m bench.attacks restart-node --times 10   # stop a recording node gracefully, restart it
    python -m bench.attacks kill-central --times 10   # kill -9 the central while nodes upload
    python -m bench.attacks busy-dir --times 10       # a second demo, node, central on a busy directory
    python -m bench.attacks drop-uploads --times 200  # clients that go away in the middle of an upload
    python -m bench.attacks hup-demo --times 5        # SIGHUP / SIGTERM a demo, look for survivors

Each runs a demo system (1 synthetic camera, 3 s segments) in a scratch directory
under bench/out/, prints one JSON line of figures, and removes the scratch directory.
Not a benchmark: nothing is timed against a baseline; these count what was lost.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from appliance.demo import DemoSystem
from appliance.custody.records import open_records
from appliance.formats.segment import read_public
from appliance.formats.chain import check_segments

OUT = Path(__file__).resolve().parent / "out"
CLI = [sys.executable, "-m", "appliance.cli"]


def _archive(system: DemoSystem, camera: str = "entrance") -> list[Path]:
    return sorted((system.central_dir / "archive" / camera).rglob("*.cseg"), key=lambda p: p.name)


def _wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.2)


def _system(scratch: Path) -> DemoSystem:
    system = DemoSystem(scratch / "demo", cameras=1, segment_seconds=3, width=320, height=240, fps=10)
    system.setup()
    system.start_central()
    system.seed()
    system.start_nodes()
    system.after_start()
    _wait(lambda: _archive(system), 90)
    return system


def _losses(system: DemoSystem) -> dict:
    """What the archive, the central's records and the node's own records say was lost."""
    files = _archive(system)
    check = check_segments(files)
    infos = [read_public(p) for p in files]
    node_dir = system.node_dir("entrance")
    loss_file = node_dir / "loss.jsonl"
    records = open_records(system.central_dir / "records" / "records.json")
    try:
        gaps = records.all("gaps")
    finally:
        records.close()
    time_gaps = [g for g in gaps if g["kind"] == "time"]
    return {
        "segments_stored": len(files),
        "chain_breaks": len(check.breaks),
        "segments_missing": sum(last - first + 1 for _c, first, last in check.gaps),
        "truncated_segments": sum(1 for i in infos if not i.complete),
        "loss_records": len(loss_file.read_text().splitlines()) if loss_file.exists() else 0,
        "left_in_spool": len(list((node_dir / "spool").glob("*.cseg*"))),
        "gap_records": {kind: sum(1 for g in gaps if g["kind"] == kind) for kind in sorted({g["kind"] for g in gaps})},
        "time_gap_seconds_total": round(sum((g["to_us"] - g["from_us"]) / 1e6 for g in time_gaps), 1),
    }


def restart_node(system: DemoSystem, times: int, graceful: bool) -> dict:
    """Stop the recording node (SIGTERM, or kill -9) at a random moment and start it again."""
    rng = random.Random(6)
    for _ in range(times):
        time.sleep(rng.uniform(1.0, 6.0))                 # anywhere in a segment, or between two
        if graceful:
            system.stop_nodes()
            time.sleep(rng.uniform(0.0, 2.0))
        else:
            proc = system.node_procs["entrance"]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        system.start_node("entrance")
    time.sleep(8)
    system.stop_nodes()
    return {"graceful_restarts_of_the_node" if graceful else "kill_9_of_the_node": times}


def kill_central(system: DemoSystem, times: int) -> dict:
    rng = random.Random(6)
    for _ in range(times):
        time.sleep(rng.uniform(0.5, 4.0))
        system.central_proc.send_signal(signal.SIGKILL)
        system.central_proc.wait()
        time.sleep(rng.uniform(0.0, 3.0))                 # the node records and spools meanwhile
        system.start_central()
    time.sleep(6)
    system.stop_nodes()                                   # drains the spool into the last central
    return {"kill_9_of_the_central": times}


def busy_dir(system: DemoSystem, times: int) -> dict:
    attempts = {
        "demo": CLI + ["demo", "--headless", "--seconds", "5", "--cameras", "1", "--data", str(system.data)],
        "node": CLI + ["--config", str(system.node_config("entrance")), "node", "run"],
        "central": CLI + ["central", "serve", "--data", str(system.central_dir), "--port", "0"],
    }
    refused = {name: 0 for name in attempts}
    slowest = 0.0
    for _ in range(times):
        for name, argv in attempts.items():
            started = time.monotonic()
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            slowest = max(slowest, time.monotonic() - started)
            refused[name] += done.returncode == 2 and "is in use by" in done.stderr
        time.sleep(0.5)
    time.sleep(4)
    system.stop_nodes()
    return {"attempts_each": times, "refused": refused, "slowest_refusal_seconds": round(slowest, 2)}


def drop_uploads(system: DemoSystem, times: int) -> dict:
    """Uploads cut off at random points (the client goes away): each is one log line, never a traceback."""
    import socket

    rng = random.Random(6)
    stored = _archive(system)[0]
    data, seq = stored.read_bytes(), int(stored.name[:10])
    log = system.data / "central.log"
    log_start = log.stat().st_size
    for _ in range(times):
        with socket.create_connection(("127.0.0.1", system.port)) as sock:
            sock.sendall(f"PUT /v1/segments/entrance/{seq} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}"
                         f"\r\n\r\n".encode() + data[:rng.randrange(1, len(data))])
        time.sleep(0.02)
    time.sleep(4)
    system.stop_nodes()
    text = log.read_text(errors="replace")[log_start:]
    return {"uploads_cut_off": times, "log_lines_cut_off": text.count(" cut off: "),
            "tracebacks_in_log": text.count("Traceback")}


def _tree(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def hup_demo(scratch: Path, times: int) -> dict:
    survivors = 0
    exits = []
    for n in range(times):
        sig = (signal.SIGHUP, signal.SIGTERM)[n % 2]
        demo = subprocess.Popen(CLI + ["demo", "--headless", "--seconds", "600", "--cameras", "1",
                                       "--segment-seconds", "2", "--data", str(scratch / "demo")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait(lambda: any(b"ffmpeg" in Path(f"/proc/{p}/cmdline").read_bytes()
                          for p in _tree(demo.pid) if Path(f"/proc/{p}").exists()), 120)
        tree = _tree(demo.pid)
        demo.send_signal(sig)
        exits.append(demo.wait(90))
        survivors += sum(1 for p in tree if Path(f"/proc/{p}").exists())
    return {"demos_signalled": times, "exit_codes": sorted(set(exits)), "processes_left_running": survivors}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("attack", choices=["kill-node", "restart-node", "kill-central", "busy-dir", "drop-uploads", "hup-demo"])
    p.add_argument("--times", type=int, default=10)
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"attack-{args.attack}-", dir=OUT))
    started = time.monotonic()
    try:
        if args.attack == "hup-demo":
            result = hup_demo(scratch, args.times)
        else:
            system = _system(scratch)
            try:
                result = {"kill-node": lambda s, n: restart_node(s, n, graceful=False),
                          "restart-node": lambda s, n: restart_node(s, n, graceful=True),
                          "kill-central": kill_central, "busy-dir": busy_dir,
                          "drop-uploads": drop_uploads}[args.attack](system, args.times)
            finally:
                system.stop()
            result |= _losses(system)       # the records open once the central has stopped
        result["minutes"] = round((time.monotonic() - started) / 60, 1)
        print(json.dumps({"attack": args.attack, **result}))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
