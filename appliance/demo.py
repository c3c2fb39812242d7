"""`custodian demo`: the whole system on one machine, as real processes on loopback.

A central daemon and N camera nodes (ffmpeg test sources) run as child processes;
the camera nodes upload over HTTP to 127.0.0.1 and the terminal UI talks to the
central's Unix socket, exactly as on the appliance. The demo seeds one account per
role and prints their passphrases: demo data only, never a real installation.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from appliance.client import ApiClient, ApiError
from appliance.datalock import CENTRAL_LOCK, DEMO_LOCK, NODE_LOCK, DataDirLock, lock_data_dir, probe

DEMO_CAMERAS = [("entrance", "entrance", "Main entrance, facing the doors"),
                ("stacks", "collection", "Adult non-fiction stacks, aisle ends"),
                ("parking", "parking", "Staff and patron car park"),
                ("lobby", "seating", "Lobby seating area"),
                ("children", "collection", "Children's area entrance")]
DEMO_PEOPLE = {"director": ("director", "demo-director-pass"), "sam": ("staff", "demo-staff-pass"),
               "ivy": ("it", "demo-it-pass")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "appliance.cli", *args]


def _spawn(argv: list[str], log_file: Path) -> subprocess.Popen:
    """A child of the demo: in its own session, so that a closing terminal's SIGHUP (or a
    Ctrl-C) reaches the demo alone, which stops its children in order (nodes first, so
    each closes its open segment and sends it). If the demo dies without stopping them
    (kill -9), Linux sends them SIGTERM (PR_SET_PDEATHSIG)."""
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(log_file, "ab"),
                            start_new_session=True, preexec_fn=_terminate_with_parent)


def _terminate_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass   # not Linux: the demo's own signal handling still stops its children


class DemoSystem:
    """Starts and stops a central and camera nodes under one data directory."""

    def __init__(self, data: Path, cameras: int = 2, segment_seconds: int = 10, width: int = 640,
                 height: int = 360, fps: int = 15, log=print):
        self.data = Path(data).resolve()
        self.count = cameras
        self.segment_seconds = segment_seconds
        self.camera_settings = {"width": width, "height": height, "fps": fps, "bitrate_kbps": 800,
                                "keyframe_seconds": 2}
        self.log = log
        self.central_dir = self.data / "central"
        self.port = _free_port()
        self.central_proc: subprocess.Popen | None = None
        self.node_procs: dict[str, subprocess.Popen] = {}
        self.socket = self.central_dir / "api.sock"
        self.dir_lock: DataDirLock | None = None

    # ------------------------------------------------------------------ set-up

    def claim(self) -> None:
        """Own the data directory before starting anything, or raise naming who does.

        The central and the nodes lock their own directories too; one of them running on
        its own here (started by hand, or left over) refuses this demo as well, now, and
        not halfway through its start with its nodes already writing."""
        if self.dir_lock is not None and self.dir_lock.held:
            return
        self.data.mkdir(parents=True, exist_ok=True)
        self.dir_lock = lock_data_dir(self.data, DEMO_LOCK, "demo")
        try:
            probe(self.central_dir, CENTRAL_LOCK, "demo")
            for name, _category, _location in DEMO_CAMERAS[: self.count]:
                probe(self.node_dir(name), NODE_LOCK, "demo")
        except BaseException:
            self.dir_lock.release()
            raise

    def setup(self) -> None:
        self.claim()
        env = dict(os.environ, CUSTODIAN_PASSPHRASE=DEMO_PEOPLE["director"][1])
        if not (self.central_dir / "keys").exists():
            out = subprocess.run(_cli("central", "init", "--data", str(self.central_dir)), env=env,
                                 capture_output=True, text=True, check=True)
            (self.data / "recovery-code.txt").write_text(out.stdout.strip().splitlines()[-1].strip() + "\n")
        keys = json.loads(subprocess.run(_cli("central", "keys", "--data", str(self.central_dir)),
                                         capture_output=True, text=True, check=True).stdout)
        self.archive_key, self.live_key = keys["archive_key"], keys["live_key"]

    def node_dir(self, name: str) -> Path:
        return self.data / "nodes" / name

    def node_config(self, name: str) -> Path:
        path = self.node_dir(name).with_suffix(".toml")
        cam = self.camera_settings
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"[node]\nname = \"{name}\"\ndata_dir = \"{self.node_dir(name)}\"\n"
            f"central_url = \"http://127.0.0.1:{self.port}\"\nsegment_seconds = {self.segment_seconds}\n"
            f"retry_max_seconds = 2.0\n\n[camera]\nbackend = \"synthetic\"\n"
            + "".join(f"{k} = {v}\n" for k, v in cam.items()))
        return path

    def start_central(self) -> None:
        cfg = self.data / "central.toml"
        cfg.write_text(f"[central]\ndata_dir = \"{self.central_dir}\"\ningest_host = \"127.0.0.1\"\n"
                       f"ingest_port = {self.port}\n")
        self.central_proc = _spawn(_cli("--config", str(cfg), "central", "serve"), self.data / "central.log")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.central_proc.poll() is not None:
                raise RuntimeError(f"the central exited ({self.central_proc.returncode}): see {self.data}/central.log")
            try:
                ApiClient(str(self.socket), timeout=2).call("session.login", {"user": "-", "passphrase": "-"})
            except ApiError as e:
                if e.code != "unavailable":
                    return
            time.sleep(0.1)
        raise RuntimeError("the central did not start within 30 s")

    def client(self, who: str = "director") -> ApiClient:
        c = ApiClient(str(self.socket))
        c.login(who, DEMO_PEOPLE[who][1])
        return c

    def seed(self) -> None:
        """One account per role, cameras enrolled and placed (idempotent)."""
        director = self.client("director")
        if director.call("session.whoami")["pending_ack"]:
            version = director.call("policy.text")["version"]
            director.call("policy.acknowledge", {"version": version})
        existing = {u["name"] for u in director.call("user.list")["users"]}
        for name, (role, passphrase) in DEMO_PEOPLE.items():
            if name not in existing:
                # As in real life: a temporary passphrase, then the person's own at first login.
                temporary = f"{passphrase}-temporary"
                director.call("user.create", {"name": name, "role": role, "passphrase": temporary})
                person = ApiClient(str(self.socket))
                person.login(name, temporary)
                person.call("user.change_passphrase", {"old": temporary, "new": passphrase})
                person.logout()
        if not director.call("signage.list")["entrance_signed"]:
            today = time.strftime("%Y-%m-%d", time.gmtime())
            director.call("signage.add", {"location": "entrance", "posted_on": today,
                                          "note": "demo: the sign at the main doors (C5)"})
        for name, category, location in DEMO_CAMERAS[: self.count]:
            if not (self.node_dir(name) / "node.key").exists():
                subprocess.run(_cli("node", "init", "--data", str(self.node_dir(name)), "--name", name,
                                    "--archive-key", self.archive_key, "--live-key", self.live_key,
                                    "--central", f"http://127.0.0.1:{self.port}"),
                               check=True, capture_output=True)
            enroll_camera(director, name, _node_public_key(self.node_dir(name)), category, location)

    def start_nodes(self) -> None:
        for name, _category, _location in DEMO_CAMERAS[: self.count]:
            self.start_node(name)

    def start_node(self, name: str) -> subprocess.Popen:
        proc = _spawn(_cli("--config", str(self.node_config(name)), "node", "run"), self.data / f"node-{name}.log")
        self.node_procs[name] = proc
        return proc

    def after_start(self) -> None:
        """Approve placements once the nodes have sent their snapshots (where placement applies)."""
        director = self.client("director")
        approve_placements(director, [n for n, _c, _l in DEMO_CAMERAS[: self.count]])

    # ------------------------------------------------------------------ tear-down

    def stop_nodes(self, timeout: float = 30) -> None:
        for proc in self.node_procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.node_procs.values():
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_central(self) -> None:
        if self.central_proc and self.central_proc.poll() is None:
            self.central_proc.send_signal(signal.SIGTERM)
            try:
                self.central_proc.wait(15)
            except subprocess.TimeoutExpired:
                self.central_proc.kill()
                self.central_proc.wait()

    def stop(self) -> None:
        self.stop_nodes()
        self.stop_central()
        if self.dir_lock is not None:
            self.dir_lock.release()

    # ------------------------------------------------------------------ checking

    def verify_archive(self) -> dict:
        """Verify every stored segment and its chain; count gaps. Needs no key."""
        from appliance.formats.chain import check_segments

        root = self.central_dir / "archive"
        files = [p for camera in root.iterdir() if camera.is_dir() and not camera.name.startswith(".")
                 for p in camera.rglob("*.cseg")]
        check = check_segments(files)
        return {"cameras": self.count, "segments": len(files), "verified": len(check.verified) - len(check.breaks),
                "gaps": len(check.gaps) + len(check.truncated)}


def _node_public_key(node_dir: Path) -> str:
    import nacl.signing

    return nacl.signing.SigningKey((node_dir / "node.key").read_bytes()).verify_key.encode().hex()


def enroll_camera(director: ApiClient, name: str, key: str, category: str, location: str) -> None:
    try:
        director.call("camera.enroll", {"camera": name, "key": key, "category": category, "location": location})
    except ApiError as e:
        if "already" not in e.message:
            raise


def approve_placements(director: ApiClient, names: list[str], timeout: float = 60) -> None:
    """Approve each camera's placement from the snapshot it sent (the Director's step, C6)."""
    try:
        director.call("camera.list")
    except ApiError:
        return
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for cam in director.call("camera.list")["cameras"]:
            if cam["id"] not in pending:
                continue
            if cam.get("status") == "approved":
                pending.discard(cam["id"])
            elif cam.get("snapshot_at"):
                director.call("camera.approve_placement", {"camera": cam["id"],
                                                           "note": "demo: placement checked on the snapshot"})
                pending.discard(cam["id"])
        time.sleep(0.5)


STOP_SIGNALS = (signal.SIGHUP, signal.SIGTERM)


def _stop_on_signal(signum, _frame) -> None:
    """SIGHUP (its terminal closed) or SIGTERM: unwind through run_demo's clean-up, exit 128+N."""
    _ignore_stop_signals()
    raise SystemExit(128 + signum)


def _ignore_stop_signals() -> None:
    """While the demo stops what it started, a second signal must not cut that short."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def run_demo(cameras: int, data: Path, headless: bool, seconds: float, segment_seconds: int) -> int:
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop_on_signal)
    system = DemoSystem(data, cameras=cameras, segment_seconds=segment_seconds)
    system.setup()
    try:
        system.start_central()
        system.seed()
        print("Custodian demo: accounts (demo only)")
        for name, (role, passphrase) in DEMO_PEOPLE.items():
            print(f"  {role:9} user {name:9} passphrase {passphrase}")
        print(f"  recovery code: {(system.data / 'recovery-code.txt').read_text().strip()}")
        print(f"starting {cameras} synthetic camera(s); the Director's placement approval follows their "
              "first snapshots...", flush=True)
        system.start_nodes()
        system.after_start()
        if headless:
            time.sleep(seconds)
        else:
            from tui.app import run_tui

            # The login screen shows the demo's accounts (demo mode only; never a real installation).
            run_tui(str(system.socket), demo_accounts=[(role, name, passphrase)
                                                       for name, (role, passphrase) in DEMO_PEOPLE.items()])
    finally:
        _ignore_stop_signals()
        system.stop()
    if headless:
        r = system.verify_archive()
        print(f"demo: cameras={r['cameras']} segments={r['segments']} verified={r['verified']} gaps={r['gaps']}")
    return 0
