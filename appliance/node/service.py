"""`custodian node run`: the node's pieces wired together.

Enrol first if the card carries a pairing code (`enrol.py`); then the camera runs from
the start (snapshots for placement approval) behind the gate, the recorder writes
segments only once the central approves the placement (C6), the uploader delivers
them and the control channel polls. SIGTERM, SIGINT and SIGHUP stop it cleanly; a
camera that cannot be reopened ends the process for systemd (exit 3).
"""
from __future__ import annotations

import logging

import threading
from pathlib import Path



from appliance.config import Config
from appliance.datalock import NODE_LOCK, lock_data_dir
import signal
from appliance.node.control import (CameraGate, CameraRunner, ControlClient, ControlState, LatestGop, NodeControl,
                                    render_gray, union_masks)

log = logging.getLogger("custodian.node")


class NodeService:
    """A camera node: backend -> gate -> recorder -> spool -> uploader, and the control thread."""

    def __init__(self, cfg: Config, data_dir: Path, *, on_fatal, boot_id: str = "",
                 clock_synced=lambda: False, make_backend=None, render=render_gray, dir_lock=None):
        from appliance.node.identity import NodeIdentity, lock_node_dir
        from appliance.node.recorder import Recorder
        from appliance.node.spool import Spool
        from appliance.node.uploader import Uploader

        self.cfg = cfg
        data_dir = Path(data_dir)
        # Before anything in the directory is touched: a second node here would write the
        # same sequence numbers into this spool and delete what this one is writing.
        self.dir_lock = dir_lock if dir_lock is not None else lock_node_dir(data_dir)   # (taken before enrolling)
        try:
            self.identity = NodeIdentity.load(data_dir)
            if cfg.node.central_url:   # the config file may move the central (a new address, a new port)
                self.identity.central_url = cfg.node.central_url
            self.client = ControlClient(self.identity)
            self.spool = Spool(data_dir / "spool", cfg.node.spool_max_bytes)
            self.uploader = Uploader(self.spool, self.identity, cfg)
            self.recorder = Recorder(self.identity, cfg, self.spool, on_segment=lambda info: self.uploader.wake.set(),
                                     boot_id=boot_id, clock_synced=clock_synced)
            self.state = ControlState.load(data_dir)
            self.tap = LatestGop()
            self.gate = CameraGate(self.recorder, self.tap, recording=self.state.status == "approved")
            self.runner = CameraRunner(cfg, self.identity.name, self.gate, on_fatal, make_backend)
            self.control = NodeControl(self.client, cfg, self.state, self.gate, self.tap, self.runner, render)
        except BaseException:
            self.dir_lock.release()
            raise

    def start(self) -> None:
        self.uploader.start()
        self.runner.start(union_masks(self.cfg.camera.masks, self.state.masks))
        self.control.start()
        log.info("node %s: camera running, placement %s, next seq %d", self.identity.name, self.state.status,
                 self.recorder.next_seq)

    def stop(self, drain_seconds: float = 10.0) -> None:
        self.control.stop()
        self.runner.stop()
        self.uploader.drain(timeout=drain_seconds)
        self.uploader.stopping.set()
        self.uploader.wake.set()
        if self.uploader.is_alive():
            self.uploader.join(5.0)
        self.close()

    def close(self) -> None:
        """Give up the data directory (after stop(), or for a service that never started)."""
        self.dir_lock.release()


def run_node(cfg: Config, data_dir: Path | None = None) -> int:
    """`custodian node run`: record until SIGTERM/SIGINT; exit non-zero if the camera fails.

    The camera runs from the start (snapshots for placement approval), but segments
    are written only once the central says the placement is approved (node_control).
    """
    from hw import board
    from hw.watchdog import SystemdNotifier

    from appliance.node.enrol import enrol_if_needed

    stop = threading.Event()
    failed = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):   # SIGHUP: its terminal closed
        signal.signal(sig, lambda *_: stop.set())
    data_dir = Path(data_dir or cfg.node.data_dir)
    dir_lock = None
    if not (data_dir / "node.json").exists():
        # A flashed card's first boot: enrol with the pairing code (docs/provisioning.md). The
        # directory is ours first: a second node here would make and write a key of its own.
        dir_lock = lock_data_dir(data_dir, NODE_LOCK, "camera node")
    try:
        enrol_if_needed(cfg, data_dir, stop, notifier=SystemdNotifier())
        if stop.is_set():
            return 0
        service = NodeService(cfg, data_dir, on_fatal=lambda: (failed.set(), stop.set()),
                              boot_id=board.boot_id(), clock_synced=board.clock_synced, dir_lock=dir_lock)
    except BaseException:
        if dir_lock is not None:
            dir_lock.release()
        raise
    service.start()
    while not stop.wait(1.0):
        pass   # a timed wait: the main thread wakes to run a signal handler even if another thread took the signal
    service.stop(drain_seconds=10.0)
    return 3 if failed.is_set() else 0
