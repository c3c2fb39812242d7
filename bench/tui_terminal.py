"""Benchmark 5: what the terminal UI writes to the terminal, per profile, and how fast it answers.

Measured: `custodian tui` as a real process in a pseudo-terminal of 80x24 (TERM and
COLORTERM as each profile's terminal sets them), against a real Central serving its
API on a Unix socket from a thread of this process. Every byte the app writes is read
from the pty's master side with its time (CLOCK_MONOTONIC). A burst ends when the app
has written nothing for QUIET seconds; its bytes and the time of its last byte count.

Bytes, per profile (full: xterm-256color + COLORTERM=truecolor; console: linux;
serial: vt220), each the median of the runs:
  - start-up: from the process start until the login screen is painted;
  - screen switch: F4 (home -> the incident list, 40 incidents);
  - page-down: PageDown in that list.
and what each takes at 115200 baud (10 bits a byte on a serial line).

Baseline (in the same run, same pty): Textual's default start-up, a minimal app with
a Header, an Input and a Footer in the default theme, truecolour. Ratio: the serial
profile's start-up over the baseline.

Latencies (full profile), with the central ingesting 16 cameras in real time (each a
thread uploading a real 2 s segment of the 1080p30 5 Mb/s clip every 2 s, signed by
the camera's own key and sealed to the central's archive key, as a node does):
  - key press to the next screen painted (F4 and F2 alternately): the last byte of the burst;
  - choosing a moment to its still on screen (Right, then Enter on the review screen:
    footage.still decodes 1080p H.264 from the last keyframe through ffmpeg).

Targets: serial start-up <= 12 KB, serial screen switch <= 4 KB.
"""
from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from datetime import timedelta
from pathlib import Path

from . import common

NAME = "tui_terminal"
TITLE = "Terminal UI: bytes written per profile at 80x24, and latencies under 16 cameras"
QUIET = 0.6
BAUD = 115200
TERMINALS = {"full": {"TERM": "xterm-256color", "COLORTERM": "truecolor"},
             "console": {"TERM": "linux"}, "serial": {"TERM": "vt220"}}
STAFF = ("sam", "sam-passphrase-1")
BASELINE_APP = """
from textual.app import App
from textual.widgets import Footer, Header, Input
class Default(App):
    def compose(self):
        yield Header()
        yield Input(placeholder="user name")
        yield Footer()
Default().run()
"""


class Pty:
    """A process in an 80x24 pseudo-terminal; every byte it writes, with the time it came."""

    def __init__(self, argv: list[str], env: dict):
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=common.ROOT,
                                     start_new_session=True)
        os.close(slave)
        self.started = time.monotonic()
        self.chunks: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.5)
                if not ready:
                    if self.proc.poll() is not None:
                        return
                    continue
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.chunks.append((time.monotonic(), data))

    def mark(self) -> int:
        with self._lock:
            return len(self.chunks)

    def send(self, text: str) -> tuple[int, float]:
        mark = self.mark()
        at = time.monotonic()
        os.write(self.master, text.encode())
        return mark, at

    def burst(self, mark: int, until: str | None = None, timeout: float = 60) -> tuple[int, float, bytes]:
        """Wait until `until` was written (if given) and then QUIET seconds of silence.
        Returns the bytes since `mark`, the time of the last byte, and the bytes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                chunks = self.chunks[mark:]
            data = b"".join(c for _, c in chunks)
            last = chunks[-1][0] if chunks else None
            if (until is None or until.encode() in data) and last is not None and time.monotonic() - last >= QUIET:
                return len(data), last, data
            time.sleep(0.05)
        raise RuntimeError(f"the app did not finish painting {until!r} within {timeout} s: {data[-300:]!r}")

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        os.close(self.master)


KEYS = {"F2": "\x1bOQ", "F4": "\x1bOS", "F6": "\x1b[17~", "enter": "\r", "right": "\x1b[C", "pagedown": "\x1b[6~"}


def _env(profile: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("COLORTERM", "NO_COLOR", "TEXTUAL")}
    env.update(TERMINALS[profile])
    env["PYTHONPATH"] = str(common.ROOT)
    return env


def _tui(sock: str, profile: str) -> Pty:
    return Pty([sys.executable, "-m", "appliance.cli", "tui", "--socket", sock], _env(profile))


def _login(term: Pty, who=STAFF) -> None:
    term.burst(0, until="ser name")
    mark, _ = term.send(who[0] + "\r")
    time.sleep(0.3)
    mark, _ = term.send(who[1] + "\r")
    term.burst(mark, until="attention")


# --------------------------------------------------------------------------- the central


def _people(central) -> None:
    director = central.call("session.login", {"user": "director", "passphrase": "director-passphrase-1"})["token"]
    version = central.call("policy.text", {}, director)["version"]
    central.call("policy.acknowledge", {"version": version}, director)
    central.call("user.create", {"name": STAFF[0], "role": "staff", "passphrase": "temporary-sam-1"}, director)
    token = central.call("session.login", {"user": STAFF[0], "passphrase": "temporary-sam-1"})["token"]
    central.call("user.change_passphrase", {"old": "temporary-sam-1", "new": STAFF[1]}, token)
    central.call("policy.acknowledge", {"version": version}, token)
    central.director_token, central.staff_token = director, token


def _incidents(central, count: int) -> None:
    when = (central.now() - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    for n in range(count):
        central.call("incident.create", {"grounds": "conduct_violation", "occurred_at": when,
                                         "location": f"desk {n}", "attestation": True,
                                         "description": "a patron shouted at staff and threw a book"},
                     central.staff_token)


def _bytes_per_profile(settings, tmp: Path) -> dict:
    from bench.central_ingest import _Serving

    serving = _Serving(tmp / "central-bytes", {})
    try:
        _people(serving.central)
        _incidents(serving.central, 40)
        sock = str(serving.central.cfg.central.api_socket)
        runs = 1 if settings.quick else 3
        figures = {}
        for profile in TERMINALS:
            startup, switch, page = [], [], []
            for _ in range(runs):
                term = _tui(sock, profile)
                try:
                    startup.append(term.burst(0, until="ser name")[0])
                    _login(term)
                    mark, _ = term.send(KEYS["F4"])
                    switch.append(term.burst(mark, until="desk")[0])
                    mark, _ = term.send(KEYS["pagedown"])
                    page.append(term.burst(mark)[0])
                finally:
                    term.close()
            figures[profile] = {"startup_bytes": common.median(startup), "switch_bytes": common.median(switch),
                                "pagedown_bytes": common.median(page)}
            for key in list(figures[profile]):
                figures[profile][key.replace("_bytes", "_seconds_at_115200")] = figures[profile][key] * 10 / BAUD
        baseline = []
        for _ in range(runs):
            term = Pty([sys.executable, "-c", BASELINE_APP], _env("full"))
            try:
                baseline.append(term.burst(0, until="ser name")[0])
            finally:
                term.close()
        figures["textual_default_startup_bytes"] = common.median(baseline)
        return figures
    finally:
        serving.stop()


# --------------------------------------------------------------------------- latencies under load


def _segment(path: Path, camera: str, key, archive_key, seq: int, prev, start_us: int, units, seconds: int):
    from appliance.formats.segment import SegmentWriter, StreamParams

    cfg = common.node_defaults()
    writer = SegmentWriter(path, params=StreamParams(camera, common.WIDTH, common.HEIGHT, common.FPS), seq=seq,
                           prev_digest=prev, archive_key=archive_key, signing_key=key, chunk_bytes=cfg.chunk_bytes,
                           chunk_seconds=cfg.chunk_seconds, fsync_seconds=cfg.fsync_seconds, start_us=start_us)
    for frame in common.frames_for(units, seconds, start_pts=seq * seconds * 1_000_000):
        writer.write_frame(frame)
    return writer.close().digest


class Load:
    """N cameras, each uploading a 2 s segment every 2 s (the same few files, re-signed each time)."""

    def __init__(self, serving, node_keys: dict, units, tmp: Path, seconds: int = 2):
        self.serving, self.keys, self.units, self.tmp, self.seconds = serving, node_keys, units, tmp, seconds
        self.stop_event = threading.Event()
        self.uploaded = 0
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._camera, args=(name,), daemon=True) for name in node_keys]

    def start(self, first: list[Path] | None = None) -> None:
        for t in self.threads:
            t.start()

    def _camera(self, name: str) -> None:
        import http.client

        archive_key = self.serving.central.keys.archive_public_key()
        prev, seq = None, 0
        start_us = time.time_ns() // 1000 - 60 * 1_000_000     # the first minute is in the past: reviewable
        path = self.tmp / "load" / f"{name}.cseg"
        path.parent.mkdir(parents=True, exist_ok=True)
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            prev = _segment(path, name, self.keys[name], archive_key, seq, prev,
                            start_us + seq * self.seconds * 1_000_000, self.units, self.seconds)
            conn = http.client.HTTPConnection("127.0.0.1", self.serving.port, timeout=120)
            try:
                with open(path, "rb") as body:
                    conn.request("PUT", f"/v1/segments/{name}/{seq}", body=body,
                                 headers={"Content-Length": str(path.stat().st_size)})
                    response = conn.getresponse()
                    response.read()
                if response.status != 201:
                    self.errors.append(f"{name}/{seq}: {response.status}")
                else:
                    self.uploaded += 1
            except OSError as e:
                self.errors.append(f"{name}/{seq}: {e}")
            finally:
                conn.close()
            seq += 1
            if seq * self.seconds < 60:     # catch up on the minute in the past at once
                continue
            next_at += self.seconds
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(60)


def _latencies(settings, tmp: Path) -> dict:
    import nacl.signing

    from bench.central_ingest import CAMERAS, _Serving

    cameras = 2 if settings.quick else CAMERAS
    node_keys = {f"bench-cam-{i:02d}": nacl.signing.SigningKey.generate() for i in range(cameras)}
    serving = _Serving(tmp / "central-load", node_keys)
    load = Load(serving, node_keys, common.clip_units(settings), tmp)
    try:
        central = serving.central
        _people(central)
        _incidents(central, 5)
        load.start()
        deadline = time.monotonic() + 120
        while load.uploaded < cameras * 20 and time.monotonic() < deadline:   # the minute in the past is in
            time.sleep(0.5)
        camera = "bench-cam-00"
        now = central.now()
        incident = central.call("incident.list", {}, central.staff_token)["incidents"][0]["id"]
        request = central.call("request.create", {
            "incident": incident, "kind": "review", "cameras": [camera], "reason": "benchmark of the review",
            "start": (now - timedelta(seconds=58)).isoformat().replace("+00:00", "Z"),
            "end": (now - timedelta(seconds=5)).isoformat().replace("+00:00", "Z")}, central.staff_token)["request"]
        central.call("request.decide", {"request": request["id"], "decision": "approve", "reason": "benchmark"},
                     central.director_token)
        central.call("archive.unseal", {"passphrase": "director-passphrase-1"}, central.director_token)
        sock = str(central.cfg.central.api_socket)
        term = _tui(sock, "full")
        switches, stills = [], []
        try:
            _login(term)
            for n in range(2 if settings.quick else 6):
                key, shows = ("F4", "desk") if n % 2 == 0 else ("F2", "attention")
                mark, at = term.send(KEYS[key])
                switches.append(term.burst(mark, until=shows)[1] - at)
            mark, _ = term.send(KEYS["F6"])
            term.burst(mark, until="grt-")
            mark, _ = term.send(KEYS["enter"])
            term.burst(mark, until="shown", timeout=120)
            for _ in range(2 if settings.quick else 5):
                mark, _ = term.send(KEYS["right"] * 5)
                term.burst(mark)
                mark, at = term.send(KEYS["enter"])
                stills.append(term.burst(mark, until="shown", timeout=120)[1] - at)
        finally:
            term.close()
        return {"cameras_loading": cameras, "segments_uploaded": load.uploaded, "upload_errors": load.errors[:5],
                "switch_seconds": common.median(switches), "switch_samples": switches,
                "still_seconds": common.median(stills), "still_samples": stills}
    finally:
        load.stop()
        serving.stop()


def run(settings: common.Settings) -> dict:
    with common.scratch(settings, NAME) as tmp:
        figures = _bytes_per_profile(settings, tmp)
        latency = _latencies(settings, tmp)
    serial = figures["serial"]
    baseline = figures["textual_default_startup_bytes"]
    checks = [common.check("serial start-up bytes", serial["startup_bytes"], "<=", 12_000),
              common.check("serial screen switch bytes", serial["switch_bytes"], "<=", 4_000)]
    return common.result(NAME, TITLE, figure=serial["startup_bytes"], unit="B", baseline=baseline, baseline_unit="B",
                         baseline_name="Textual default start-up (truecolour)",
                         ratio=serial["startup_bytes"] / baseline, checks=checks,
                         details={"profiles": {p: figures[p] for p in TERMINALS}, "latency": latency})
