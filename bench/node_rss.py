"""Benchmark 3: peak RSS of a real node recording process.

A child Python process imports what `custodian node run` imports (NODE_RUN_IMPORTS:
appliance.cli, appliance.node.recorder, appliance.node.control and the hw modules), then
records exactly as a node does after the encoder: it reads Annex-B H.264 from a pipe
64 KiB at a time (as from ffmpeg's stdout), parses it (hw.annexb), and hands the
access units to the KeyframeSplitter and appliance.node.recorder.Recorder (SegmentWriter:
encrypt, sign, fsync, rename, chain head). Finished segments are deleted at once,
standing in for the uploader's delete-after-acknowledgement. The parent feeds the
1080p30 5 Mb/s stream as fast as the child takes it (faster than real time) for 4
segments of the node's configured length, sampling the child's VmRSS every 20 ms,
then reads VmHWM from /proc/<child>/status while the child is still alive. The
figure is the larger of VmHWM and the largest sample. The child also reports its
RSS right after its imports, which separates what the interpreter and libraries
cost from what recording adds.

Target: peak RSS <= 80 MB (an absolute budget; the Pi Zero 2 W has 512 MB in all).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

from . import common

NAME = "node_rss"
TITLE = "Node peak RSS while recording 1080p30 5 Mb/s (parser + Recorder/SegmentWriter child process)"
TARGET_MB = 80.0
# What `custodian node run` imports (appliance.cli -> appliance.node.service.run_node, which pulls in
# hw.board and appliance.node.control, which pulls in hw.factory (the ffmpeg backend) and
# hw.watchdog). A module listed here that does not exist (yet) is reported, not fatal.
NODE_RUN_IMPORTS = ("appliance.cli", "appliance.node.recorder", "appliance.node.control", "hw.board",
                    "hw.factory", "hw.ffmpeg_source", "hw.watchdog")


def _child(argv: list[str]) -> int:
    """Runs in the child: `python -m bench.node_rss --child DATA_DIR SEGMENT_SECONDS`."""
    data_dir, segment_seconds = argv[0], int(argv[1])
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    import importlib
    from pathlib import Path

    missing = []
    for module in NODE_RUN_IMPORTS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:        # a module that exists but fails to import is an error
                raise
            missing.append(module)

    from bench.node_cpu import make_node, record_from_fd

    after_imports = common.proc_status("self")
    recorder, segments = make_node(Path(data_dir), segment_seconds)
    t0 = time.perf_counter()
    frames = record_from_fd(sys.stdin.fileno(), recorder, segment_seconds)
    wall = time.perf_counter() - t0
    status = common.proc_status("self")
    print(json.dumps({"frames": frames, "segments": len(segments), "segment_bytes": segments, "missing": missing,
                      "wall": wall, "after_imports": after_imports, "at_end": status}), flush=True)
    signal.sigwait({signal.SIGTERM})    # stay alive until the parent has read /proc
    return 0


def run(settings: common.Settings) -> dict:
    cfg = common.node_defaults()
    segment_seconds = 2 if settings.quick else cfg.segment_seconds
    segments_wanted = 4
    with common.scratch(settings, NAME) as tmp:
        stream = tmp / "stream.h264"
        size, video_seconds = common.write_looped_stream(settings, stream, segments_wanted * segment_seconds)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(common.ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.node_rss", "--child", str(tmp / "node"), str(segment_seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=common.ROOT, env=env)
        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:     # VmRSS over time, as a cross-check of VmHWM
            while not done.is_set():
                try:
                    samples.append(common.proc_status(proc.pid)["VmRSS"])
                except (OSError, KeyError):
                    return
                done.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            t0 = time.perf_counter()
            with open(stream, "rb") as f:
                while block := f.read(1 << 16):
                    proc.stdin.write(block)
            proc.stdin.close()
            line = proc.stdout.readline()
            feed_wall = time.perf_counter() - t0
            if not line:
                raise RuntimeError(f"node child failed: {proc.stderr.read().decode(errors='replace')[-2000:]}")
            child = json.loads(line)
            status = common.proc_status(proc.pid)
        finally:
            done.set()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            sampler.join(5)
    # The kernel folds per-thread RSS counters into VmHWM lazily, so a sampled VmRSS can
    # exceed it by a few pages: the figure is the larger of the two.
    peak_kb = max([status["VmHWM"]] + samples)
    hwm_mb = peak_kb * 1024 / common.MB
    imports_mb = child["after_imports"]["VmRSS"] * 1024 / common.MB
    return common.result(
        NAME, TITLE, figure=hwm_mb, unit="MB", baseline=imports_mb, baseline_unit="MB",
        baseline_name="RSS of the same child after its imports, before recording", ratio=None,
        checks=[common.check("peak RSS MB", hwm_mb, "<=", TARGET_MB)],
        details={
            "vmhwm_kb": status["VmHWM"],
            "vmrss_kb_at_end": status["VmRSS"],
            "vmrss_kb_after_imports": child["after_imports"]["VmRSS"],
            "max_sampled_vmrss_kb": max(samples) if samples else None,
            "rss_samples": len(samples),
            "recording_adds_mb": hwm_mb - imports_mb,
            "segments": child["segments"],
            "imported": [m for m in NODE_RUN_IMPORTS if m not in child["missing"]],
            "not_found": child["missing"],
            "segment_seconds": segment_seconds,
            "frames": child["frames"],
            "video_seconds": video_seconds,
            "stream_bytes": size,
            "feed_x_realtime": video_seconds / feed_wall,
            "units": "MB = 10^6 bytes; the *_kb fields are /proc's KiB",
        },
    )


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--child":
        sys.exit(_child(sys.argv[2:]))
    sys.exit("run through bench.run: python -m bench.run --only node_rss")
