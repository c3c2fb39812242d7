"""What the benchmarks share: the test stream, scratch space, timing helpers, result shape.

The stream is a 1080p30 H.264 clip at 5 Mb/s made once with ffmpeg libx264, with the
node's own encoder settings (hw/ffmpeg_source.py: ultrafast, zerolatency, a keyframe
with SPS/PPS every 2 s, access unit delimiters). It is cached under the output
directory (bench/out/, git-ignored) and looped to make longer streams: the clip
starts with SPS/PPS and an IDR picture, so clips joined byte for byte are a valid
stream, and a keyframe still comes every 2 s across the joins.

Everything a benchmark writes goes into a scratch directory under the output
directory and is removed when the benchmark ends, whether it succeeded or not.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
OUT_DEFAULT = BENCH_DIR / "out"

WIDTH, HEIGHT, FPS = 1920, 1080, 30
KBPS = 5000
KEYFRAME_SECONDS = 2
NOMINAL_BYTES_PER_SECOND = KBPS * 1000 / 8          # 5 Mb/s = 625,000 B/s
MB = 1_000_000                                      # MB/s in this suite are 10^6 bytes/s

FFMPEG_TIMEOUT = 300


@dataclass
class Settings:
    quick: bool
    out: Path

    @property
    def clip_seconds(self) -> int:
        # A whole number of GOPs. The full clip is looped; 20 s keeps encoding it cheap.
        return 2 if self.quick else 20


# --------------------------------------------------------------------------- the stream


def clip_command(path: Path, seconds: int) -> list[str]:
    """ffmpeg argv (built with ffmpeg-python) for the test clip: the node's encoder settings."""
    import ffmpeg

    gop = FPS * KEYFRAME_SECONDS
    return (
        ffmpeg.input(f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}", f="lavfi", t=seconds)
        .output(str(path), format="h264", vcodec="libx264", preset="ultrafast", tune="zerolatency",
                pix_fmt="yuv420p", g=gop, keyint_min=gop, sc_threshold=0,
                **{"b:v": f"{KBPS}k", "maxrate": f"{KBPS}k", "bufsize": f"{2 * KBPS}k",
                   "x264-params": "repeat-headers=1:aud=1"})
        .global_args("-hide_banner", "-nostdin", "-nostats", "-loglevel", "error")
        .overwrite_output()
        .compile()
    )


def clip(settings: Settings) -> Path:
    """The cached Annex-B test clip (made on first use; shared by every benchmark)."""
    seconds = settings.clip_seconds
    name = f"clip-{WIDTH}x{HEIGHT}-{FPS}fps-{KBPS}k-g{FPS * KEYFRAME_SECONDS}-{seconds}s.h264"
    path = settings.out / name
    if path.exists() and path.stat().st_size > 0:
        return path
    settings.out.mkdir(parents=True, exist_ok=True)
    tmp = settings.out / f".{name}.{os.getpid()}.tmp"
    try:
        subprocess.run(clip_command(tmp, seconds), check=True, timeout=FFMPEG_TIMEOUT,
                       stdin=subprocess.DEVNULL, capture_output=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def clip_units(settings: Settings):
    """The clip's access units (hw.annexb), checked to start with a keyframe."""
    from hw.annexb import split_access_units

    units = split_access_units(clip(settings).read_bytes())
    if not units or not units[0].keyframe:
        raise RuntimeError("the test clip does not start with a keyframe")
    return units


def frames_for(units, seconds: float, start_pts: int = 0) -> list:
    """`seconds` of video as Frames (the clip looped), stamped at exactly FPS."""
    from hw.backend import Frame

    n = int(round(seconds * FPS))
    return [Frame(units[i % len(units)].data, units[i % len(units)].keyframe,
                  start_pts + i * 1_000_000 // FPS) for i in range(n)]


def write_looped_stream(settings: Settings, path: Path, seconds: float) -> tuple[int, float]:
    """Write the clip looped to at least `seconds` of video; returns (bytes, seconds of video)."""
    data = clip(settings).read_bytes()
    loops = max(1, -(-int(seconds) // settings.clip_seconds))
    with open(path, "wb") as f:
        for _ in range(loops):
            f.write(data)
    return len(data) * loops, float(loops * settings.clip_seconds)


# --------------------------------------------------------------------------- scratch, timing


@contextlib.contextmanager
def scratch(settings: Settings, name: str) -> Iterator[Path]:
    """A fresh directory under the output directory, removed afterwards."""
    settings.out.mkdir(parents=True, exist_ok=True)
    path = settings.out / f"tmp-{name}-{os.getpid()}-{time.monotonic_ns()}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def settle() -> None:
    """Write back dirty pages left by the previous trial so it does not bill the next one."""
    os.sync()


def median(values) -> float:
    return statistics.median(values)


def rusage_self() -> tuple[float, float]:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def rusage_children() -> tuple[float, float]:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime, r.ru_stime


def proc_status(pid: int | str) -> dict[str, int]:
    """Vm* fields of /proc/<pid>/status, in kB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.startswith("Vm") or key.startswith("Rss"):
                fields[key] = int(value.split()[0])
    return fields


def check(what: str, measured: float, op: str, target: float) -> dict:
    met = measured >= target if op == ">=" else measured <= target
    return {"what": what, "measured": measured, "op": op, "target": target, "met": bool(met)}


def result(name: str, title: str, *, figure: float, unit: str, baseline: float | None,
           baseline_unit: str | None, baseline_name: str | None, ratio: float | None,
           checks: list[dict], details: dict) -> dict:
    return {
        "name": name, "title": title, "figure": figure, "unit": unit,
        "baseline": baseline, "baseline_unit": baseline_unit, "baseline_name": baseline_name,
        "ratio": ratio, "checks": checks, "met": all(c["met"] for c in checks), "details": details,
    }


# --------------------------------------------------------------------------- the machine


def machine() -> dict:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        ffmpeg_version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True,
                                        timeout=30).stdout.split("\n", 1)[0].split(" Copyright")[0]
    except (OSError, subprocess.SubprocessError):
        ffmpeg_version = "?"
    try:
        import nacl
        pynacl = nacl.__version__
    except ImportError:
        pynacl = "?"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "ffmpeg": ffmpeg_version,
        "pynacl": pynacl,
    }


def node_defaults():
    """The node's configured defaults (chunk size, fsync interval, segment length)."""
    from appliance.config import NodeConfig

    return NodeConfig()
