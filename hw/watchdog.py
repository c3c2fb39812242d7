"""The in-app frame watchdog, and systemd notification.

Recovery from a stalled camera is layered; each layer catches what the one before
could not:

1. This watchdog notices that frames stopped (nothing for ``stall_seconds``, or the
   backend reports ``stall_reason``) and reopens the camera: ``backend.restart()`` runs
   in a worker thread and gets ``deadline_seconds`` to return (``stop_recording()`` can
   hang on a wedged camera).
2. A restart fails if it raises, misses its deadline, or brings no frame within
   another ``stall_seconds``. After ``max_restarts`` consecutive failures the watchdog
   calls ``on_fatal`` (default: log and ``os._exit(3)``), and systemd
   (``Restart=always``) starts a fresh process: a fresh libcamera, a fresh ffmpeg.
3. ``WATCHDOG=1`` goes to systemd only while frames flow, so a process that is stuck
   in a way this thread cannot see is killed and restarted by systemd
   (``WatchdogSec``); ``READY=1`` goes once the first frame arrives (``Type=notify``).
4. If restarts never help (the camera needs a power cycle), systemd's start limits can
   reboot the machine (``StartLimitAction=reboot``).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable

from .backend import CameraBackend, SegmentOpener

log = logging.getLogger(__name__)


class SystemdNotifier:
    """sd_notify(3) without libsystemd: datagrams to $NOTIFY_SOCKET (a path, or '@name'
    for an abstract socket). Does nothing when not run by systemd."""

    def __init__(self, address: str | None = None):
        if address is None:
            address = os.environ.get("NOTIFY_SOCKET") or None
        self.address = address
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def _target(self) -> str | bytes:
        addr = self.address or ""
        if addr.startswith("@"):
            return b"\0" + addr[1:].encode()
        return addr

    def notify(self, message: str) -> bool:
        if not self.address:
            return False
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(message.encode(), self._target())
                return True
            except OSError as e:
                log.debug("sd_notify %r to %s failed: %s", message, self.address, e)
                return False

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def systemd_watchdog_interval(default: float = 5.0) -> float:
    """Half of WatchdogSec (from $WATCHDOG_USEC, when meant for this process)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if usec and (not pid or pid == str(os.getpid())):
        try:
            return max(0.05, int(usec) / 2e6)
        except ValueError:
            pass
    return default


def _exit_for_systemd() -> None:
    log.critical("camera cannot be recovered in this process: exiting with status 3 for systemd to restart it")
    logging.shutdown()
    os._exit(3)


class FrameWatchdog:
    """Watches ``backend.last_frame_at``; restarts the backend, then gives up loudly."""

    def __init__(self, backend: CameraBackend, opener: SegmentOpener, segment_seconds: float,
                 stall_seconds: float, max_restarts: int, deadline_seconds: float | None = None, *,
                 on_fatal: Callable[[], None] | None = None, notifier: SystemdNotifier | None = None,
                 notify_interval: float | None = None, poll_seconds: float | None = None,
                 retry_pause: float | None = None):
        self.backend = backend
        self.opener = opener
        self.segment_seconds = segment_seconds
        self.stall_seconds = float(stall_seconds)
        self.max_restarts = int(max_restarts)
        # stop() closes and signs the open segment, then the camera reopens: allow for both
        self.deadline_seconds = float(deadline_seconds) if deadline_seconds is not None else max(
            10.0, 2 * self.stall_seconds)
        self.on_fatal = on_fatal or _exit_for_systemd
        self.notifier = notifier if notifier is not None else SystemdNotifier()
        self.notify_interval = notify_interval if notify_interval is not None else systemd_watchdog_interval()
        self.poll_seconds = poll_seconds if poll_seconds is not None else min(0.5, self.stall_seconds / 5)
        self.retry_pause = retry_pause if retry_pause is not None else min(1.0, self.stall_seconds / 2)
        self.restarts = 0               # restarts attempted
        self.failures = 0               # consecutive failed restarts
        self.fatal_reason: str | None = None
        self.last_failure: str | None = None
        self.ready_sent = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="frame-watchdog", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout if timeout is not None else self.deadline_seconds + 5)
        self._thread = None
        self.notifier.close()

    # -- the loop --------------------------------------------------------------

    def _stalled(self, now: float) -> str | None:
        reason = getattr(self.backend, "stall_reason", None)
        if reason:
            return reason
        waiting = getattr(self.backend, "waiting_for_source", None)
        if waiting:
            silent = now - self.backend.alive_at
            if silent > self.stall_seconds:
                return f"the reconnect loop is silent for {silent:.1f}s ({waiting})"
            return None
        idle = now - self.backend.last_frame_at
        if idle > self.stall_seconds:
            return f"no frame for {idle:.1f}s"
        return None

    def _run(self) -> None:
        last_ping = 0.0
        frames_at_ping = 0
        waiting_since: float | None = None     # a restart returned; frames must follow
        frames_at_restart = 0
        status: str | None = None               # what the backend waits for, as last told to systemd
        while not self._stop.wait(self.poll_seconds):
            now = time.monotonic()
            if waiting_since is not None:
                pending = getattr(self.backend, "stall_reason", None)
                reconnecting = getattr(self.backend, "waiting_for_source", None)
                if (self.backend.frames > frames_at_restart or reconnecting) and not pending:
                    log.info("camera recovered after restart %d", self.restarts)
                    self.notifier.notify("STATUS=recording")
                    self.failures = 0
                    waiting_since = None
                elif pending or now - waiting_since > self.stall_seconds:
                    waiting_since = None
                    if self._failed(f"no frames after the restart ({pending or 'nothing arrived'})"):
                        return
                    continue
                else:
                    continue
            reason = self._stalled(now)
            if reason is None:
                waiting = getattr(self.backend, "waiting_for_source", None)
                line = f"STATUS=waiting for the camera: {waiting}" if waiting else "STATUS=recording"
                if (self.backend.frames or waiting) and not self.ready_sent:
                    self.notifier.notify("READY=1\n" + line)
                    self.ready_sent = True
                    status = waiting
                elif self.ready_sent and waiting != status:
                    self.notifier.notify(line)
                    status = waiting
                # ping only for fresh frames, or while a backend reconnects to its source by itself
                # (its heartbeat was checked above): a camera that never delivers is never "alive"
                if now - last_ping >= self.notify_interval and (self.backend.frames > frames_at_ping or waiting):
                    self.notifier.notify("WATCHDOG=1")
                    last_ping = now
                    frames_at_ping = self.backend.frames
                continue
            # stalled: reopen the camera under a deadline
            self.restarts += 1
            log.warning("camera stalled (%s): restart %d (failures so far: %d of %d)",
                        reason, self.restarts, self.failures, self.max_restarts)
            if self.max_restarts <= 0:
                self._fatal(f"camera stalled ({reason}) and restarts are disabled")
                return
            self.notifier.notify(f"STATUS=camera stalled ({reason}); restarting")
            frames_at_restart = self.backend.frames
            error = self._restart()
            if self._stop.is_set():
                return
            if error is not None:
                if self._failed(error):
                    return
                self._stop.wait(self.retry_pause)
                continue
            waiting_since = time.monotonic()

    def _restart(self) -> str | None:
        """Run backend.restart() in a worker; None if it returned in time, else why not."""
        outcome: dict[str, BaseException] = {}

        def work():
            try:
                self.backend.restart(self.opener, self.segment_seconds)
            except BaseException as e:   # noqa: BLE001 -- reported, not swallowed
                outcome["error"] = e

        worker = threading.Thread(target=work, name="camera-restart", daemon=True)
        worker.start()
        worker.join(self.deadline_seconds)
        if worker.is_alive():
            return f"restart did not finish within {self.deadline_seconds:.0f}s"
        if "error" in outcome:
            return f"restart failed: {outcome['error']}"
        return None

    def _failed(self, why: str) -> bool:
        """Count a failed restart; True when it was the last one allowed."""
        self.failures += 1
        self.last_failure = why
        log.error("camera restart failed (%d of %d): %s", self.failures, self.max_restarts, why)
        if self.failures >= self.max_restarts:
            self._fatal(f"{self.failures} consecutive restarts failed; last: {why}")
            return True
        return False

    def _fatal(self, reason: str) -> None:
        self.fatal_reason = reason
        log.critical("camera watchdog gives up: %s", reason)
        self.notifier.notify(f"STATUS=camera failed: {reason}")
        self.on_fatal()
