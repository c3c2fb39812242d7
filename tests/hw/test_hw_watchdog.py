"""hw.watchdog: stalls lead to restarts, restarts that fail lead to on_fatal, and systemd
hears READY=1 / WATCHDOG=1 on a real AF_UNIX datagram socket."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
import uuid

import pytest

from hw.settings import CameraSettings
from hw import board as board_mod
from hw.backend import CameraBackend, CameraFailed
from hw.ffmpeg_source import FfmpegBackend
from hw.selftest import MemoryOpener, check_segments
from hw.watchdog import FrameWatchdog, SystemdNotifier, systemd_watchdog_interval

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def wait_for(cond, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


class PulseBackend(CameraBackend):
    """No camera: the test says when a frame arrives."""

    name = "pulse"

    def __init__(self):
        super().__init__()
        self.starts = 0
        self.fail_starts = False

    def start(self, opener, segment_seconds):
        if self.fail_starts:
            raise CameraFailed("camera did not open")
        self.starts += 1
        self._reset_liveness()

    def stop(self):
        pass

    def pulse(self, n=1):
        for _ in range(n):
            self._saw_frame()


class Listener:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (socket.timeout, BlockingIOError):
                return self.messages

    def close(self):
        self.sock.close()


def test_notify_ready_then_pings_only_while_frames_flow(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    listener = Listener(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    backend = PulseBackend()
    backend.start(None, 1)
    dog = FrameWatchdog(backend, MemoryOpener(), 1, stall_seconds=0.6, max_restarts=5, deadline_seconds=2,
                        on_fatal=lambda: None, notify_interval=0.1, poll_seconds=0.05)
    dog.start()
    try:
        time.sleep(0.3)
        assert not any("READY=1" in m for m in listener.drain())   # no frame yet: not ready
        stop_pulses = threading.Event()

        def frames():
            while not stop_pulses.wait(0.05):
                backend.pulse()

        pulser = threading.Thread(target=frames, daemon=True)
        pulser.start()
        wait_for(lambda: sum(m == "WATCHDOG=1" for m in listener.drain()) >= 3, timeout=10)
        msgs = listener.drain()
        assert msgs.count("READY=1\nSTATUS=recording") == 1
        assert msgs.index("READY=1\nSTATUS=recording") < msgs.index("WATCHDOG=1")
        # frames stop: pings stop, and the watchdog restarts the camera
        stop_pulses.set()
        pulser.join()
        wait_for(lambda: dog.restarts >= 1, timeout=10)
        # The count goes up before the status is sent (a log line between): wait for it, not 0.1 s.
        wait_for(lambda: any(m.startswith("STATUS=camera stalled") for m in listener.drain()), timeout=10)
        listener.messages.clear()
        time.sleep(0.4)                            # 4 ping intervals without a frame
        assert "WATCHDOG=1" not in listener.drain()
    finally:
        dog.stop()
        listener.close()


def test_backend_waiting_for_its_source_is_left_to_reconnect_while_its_loop_beats(tmp_path, monkeypatch):
    """An IP camera that dropped: the backend reconnects by itself (restarting would not help);
    the process stays alive for systemd while the reconnect loop beats, and not once it stops."""
    path = tmp_path / "notify.sock"
    listener = Listener(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    backend = PulseBackend()
    backend.start(None, 1)
    backend.pulse()
    dog = FrameWatchdog(backend, MemoryOpener(), 1, stall_seconds=0.5, max_restarts=5, deadline_seconds=2,
                        on_fatal=lambda: None, notify_interval=0.1, poll_seconds=0.05)
    backend.waiting_for_source = "connection refused; retrying in 4 s"
    beating = threading.Event()
    beating.set()

    def loop():
        while beating.is_set():
            backend.alive_at = time.monotonic()
            time.sleep(0.05)

    beat = threading.Thread(target=loop, daemon=True)
    beat.start()
    dog.start()
    try:
        time.sleep(1.5)                            # three stall periods without a frame
        assert dog.restarts == 0 and backend.starts == 1
        msgs = listener.drain()
        assert "READY=1\nSTATUS=waiting for the camera: connection refused; retrying in 4 s" in msgs
        assert msgs.count("WATCHDOG=1") >= 5       # alive: its loop turns
        beating.clear()                            # the reconnect loop hangs: now it is a stall
        beat.join()
        wait_for(lambda: dog.restarts >= 1, timeout=10)
    finally:
        dog.stop()
        listener.close()


def test_notifier_handles_abstract_sockets(monkeypatch):
    name = f"custodian-test-{uuid.uuid4().hex}"
    listener = Listener("\0" + name)
    try:
        notifier = SystemdNotifier(f"@{name}")
        assert notifier.notify("WATCHDOG=1")
        wait_for(lambda: listener.drain() == ["WATCHDOG=1"], timeout=5)
        notifier.close()
    finally:
        listener.close()
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not SystemdNotifier().enabled and not SystemdNotifier().notify("READY=1")
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd_watchdog_interval() == 2.0
    monkeypatch.setenv("WATCHDOG_PID", "1")                   # meant for another process
    assert systemd_watchdog_interval(7.0) == 7.0


def test_repeated_failed_restarts_call_on_fatal():
    backend = PulseBackend()
    backend.start(None, 1)
    backend.pulse()
    backend.fail_starts = True
    fatal = threading.Event()
    dog = FrameWatchdog(backend, MemoryOpener(), 1, stall_seconds=0.3, max_restarts=3, deadline_seconds=2,
                        on_fatal=fatal.set, notifier=SystemdNotifier(""), retry_pause=0.05)
    dog.start()
    try:
        assert fatal.wait(10)
    finally:
        dog.stop()
    assert dog.failures == 3 and dog.restarts == 3
    assert "camera did not open" in dog.fatal_reason


def test_restart_without_frames_counts_as_a_failure():
    backend = PulseBackend()                       # restarts "work" but no frame ever comes
    backend.start(None, 1)
    backend.pulse()
    fatal = threading.Event()
    dog = FrameWatchdog(backend, MemoryOpener(), 1, stall_seconds=0.3, max_restarts=2, deadline_seconds=2,
                        on_fatal=fatal.set, notifier=SystemdNotifier(""))
    dog.start()
    try:
        assert fatal.wait(10)
    finally:
        dog.stop()
    assert backend.starts == 3 and dog.failures == 2
    assert "no frames after the restart" in dog.fatal_reason


@needs_ffmpeg
def test_sigstopped_ffmpeg_is_restarted_and_recording_resumes():
    cfg = CameraSettings(backend="synthetic", width=160, height=120, fps=10, keyframe_seconds=1, bitrate_kbps=200)
    backend = FfmpegBackend(cfg, "frozen", stop_timeout=0.5)
    opener = MemoryOpener()
    fatal = []
    backend.start(opener, 1)
    dog = FrameWatchdog(backend, opener, 1, stall_seconds=1.0, max_restarts=3, deadline_seconds=10,
                        on_fatal=lambda: fatal.append(1), notifier=SystemdNotifier(""))
    dog.start()
    old_pid = backend.proc.pid
    try:
        wait_for(lambda: backend.frames >= 5)
        os.kill(old_pid, signal.SIGSTOP)           # ffmpeg freezes: no more frames, no exit
        frozen_at = backend.frames
        wait_for(lambda: dog.restarts >= 1 and backend.proc is not None and backend.proc.pid != old_pid)
        wait_for(lambda: backend.frames >= frozen_at + 10 and dog.failures == 0)
    finally:
        dog.stop()
        backend.stop()
        try:
            os.kill(old_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not fatal
    assert not os.path.exists(f"/proc/{old_pid}") or "Z" in open(f"/proc/{old_pid}/stat").read().split(") ")[1][:1]
    ok, detail = check_segments(opener.segments)
    assert ok, detail
    assert opener.order_errors == 0 and all(s.closed for s in opener.segments)


@needs_ffmpeg
def test_ffmpeg_exit_is_a_stall_at_once():
    cfg = CameraSettings(backend="synthetic", width=160, height=120, fps=10, keyframe_seconds=1, bitrate_kbps=200)
    backend = FfmpegBackend(cfg, "killed")
    opener = MemoryOpener()
    backend.start(opener, 1)
    # stall_seconds is long: only the backend's own report can trigger this restart quickly
    dog = FrameWatchdog(backend, opener, 1, stall_seconds=60, max_restarts=3, deadline_seconds=10,
                        on_fatal=lambda: None, notifier=SystemdNotifier(""), poll_seconds=0.05)
    dog.start()
    try:
        wait_for(lambda: backend.frames >= 3)
        pid = backend.proc.pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: dog.restarts == 1, timeout=20)
        wait_for(lambda: backend.proc is not None and backend.proc.pid != pid and backend.stall_reason is None)
        count = backend.frames
        wait_for(lambda: backend.frames > count + 3)
    finally:
        dog.stop()
        backend.stop()
    assert check_segments(opener.segments)[0]


@pytest.fixture
def fake_p2(fake_picamera2_path):
    import picamera2
    picamera2._fake.control.reset()
    yield picamera2._fake.control
    picamera2._fake.control.release_hang()
    for cam in list(picamera2._fake.control.opened):
        try:
            cam.close()
        except Exception:
            pass


@needs_ffmpeg
def test_picamera2_failed_reopens_call_on_fatal(fake_p2):
    from hw.picamera2_backend import Picamera2Backend

    cfg = CameraSettings(backend="picamera2", width=160, height=120, fps=10, keyframe_seconds=1, bitrate_kbps=200)
    backend = Picamera2Backend(cfg, "dead", board=board_mod.Board("Raspberry Pi Zero 2 W", "pi02"))
    opener = MemoryOpener()
    fatal = threading.Event()
    backend.start(opener, 1)
    dog = FrameWatchdog(backend, opener, 1, stall_seconds=0.8, max_restarts=3, deadline_seconds=10,
                        on_fatal=fatal.set, notifier=SystemdNotifier(""), retry_pause=0.1)
    dog.start()
    try:
        wait_for(lambda: backend.frames >= 3 and dog.failures == 0)
        attempts = fake_p2.open_attempts
        fake_p2.fail_open = -1                     # the camera never comes back
        fake_p2.stall()
        assert fatal.wait(20)
    finally:
        dog.stop()
        backend.stop()
    assert dog.failures == 3 and fake_p2.open_attempts - attempts == 3
    assert "did not open" in dog.fatal_reason
    assert all(s.closed for s in opener.segments) and check_segments(opener.segments)[0]


@needs_ffmpeg
def test_picamera2_wedged_stop_misses_the_deadline(fake_p2):
    from hw.picamera2_backend import Picamera2Backend

    cfg = CameraSettings(backend="picamera2", width=160, height=120, fps=10, keyframe_seconds=1, bitrate_kbps=200)
    backend = Picamera2Backend(cfg, "wedged", board=board_mod.Board("Raspberry Pi 3", "pi3"), stop_grace=0.3)
    opener = MemoryOpener()
    fatal = threading.Event()
    backend.start(opener, 1)
    dog = FrameWatchdog(backend, opener, 1, stall_seconds=0.8, max_restarts=2, deadline_seconds=1.0,
                        on_fatal=fatal.set, notifier=SystemdNotifier(""), retry_pause=0.05)
    dog.start()
    try:
        wait_for(lambda: backend.frames >= 3)
        fake_p2.hang_stop = True                   # stop_recording() never returns
        fake_p2.stall()
        assert fatal.wait(20)
        assert "did not finish within" in dog.fatal_reason
        # the open segment was closed anyway, although the camera never stopped
        assert opener.segments and all(s.closed for s in opener.segments)
    finally:
        dog.stop()
        fake_p2.release_hang()
        # the abandoned restarts now finish (in production the process has exited by then)
        wait_for(lambda: not any(t.name == "camera-restart" for t in threading.enumerate()), timeout=20)
        backend.stop()
    assert check_segments(opener.segments)[0]
