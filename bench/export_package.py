"""Benchmark 6: building an evidence package for one hour of one camera, against a bare ffmpeg stream copy.

Measured: a real Central (init_central, one enrolled camera, the archive unsealed)
holding one hour of that camera's segments (60 segments of 60 s, written by
SegmentWriter and committed to the archive as ingest does), a subpoena, counsel and
a release covering the hour. One trial is `release.build` through `Central.call`
until the build is done: the segments verified, decrypted through a pipe into
ffmpeg, the MP4 hashed as it is written, 3 stills, the PDF report, SHA256SUMS and the
signed manifest, everything fsync'd and renamed into place.

Baseline: the least a stream copy of the same footage costs: the same hour's
plaintext H.264 (the segments' access units joined) in one file, and
`ffmpeg -f h264 -framerate FPS -i plain.h264 -c copy out.mp4` (no encryption, no
hashing, no fsync). The sides alternate; dirty pages are written back before every
trial; medians are compared. Target: package / ffmpeg <= 1.3.

The floor, measured in the same run after each pair of trials: the work no package can
skip besides ffmpeg's: verifying and decrypting the hour (as the build reads it), and one
SHA-256 pass over its H.264 (the package needs three, and one over the ciphertext that
verifying includes). Wall and CPU seconds of each are in the details.

The footage is made quickly: 60 s of testsrc2 at 320x240, 15 fps, libx264 ultrafast
with the nodes' settings (a keyframe with SPS/PPS every 2 s, access unit delimiters),
looped to an hour (each loop starts at a keyframe, so the joined stream is valid).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from . import common

NAME = "export_package"
TITLE = "Evidence package for 1 h of one camera (vs bare ffmpeg -c copy of the plaintext)"
TARGET = 1.3
WIDTH, HEIGHT, FPS = 320, 240, 15
LOOP_SECONDS = 60
DIRECTOR = ("director", "director-passphrase-1")


def _loop_clip(path: Path) -> bytes:
    import ffmpeg

    argv = (ffmpeg.input(f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}", f="lavfi", t=LOOP_SECONDS)
            .output(str(path), format="h264", vcodec="libx264", preset="ultrafast", tune="zerolatency",
                    pix_fmt="yuv420p", g=2 * FPS, keyint_min=2 * FPS, sc_threshold=0,
                    **{"x264-params": "repeat-headers=1:aud=1"})
            .global_args("-hide_banner", "-nostdin", "-loglevel", "error").overwrite_output().compile())
    subprocess.run(argv, check=True, timeout=common.FFMPEG_TIMEOUT, capture_output=True)
    return path.read_bytes()


class _Archive:
    """A central with one camera's hour of segments and a release covering it."""

    def __init__(self, root: Path, seconds: int, units):
        import nacl.signing

        from appliance import config
        from appliance.formats import segment as seg
        from appliance.central.daemon import Central, init_central
        from appliance.rules.registry import iso
        from hw.backend import Frame

        init_central(root / "central", *DIRECTOR)
        self._sock_dir = tempfile.mkdtemp(prefix="custodian-bench-")
        cfg = config.load(overrides={"central": {"data_dir": str(root / "central"), "ingest_port": 0,
                                                 "api_socket": os.path.join(self._sock_dir, "api.sock")}})
        self.central = central = Central(cfg, root / "central")
        node = nacl.signing.SigningKey.generate()
        central.records.insert("cameras", {"key": node.verify_key.encode().hex(), "category": "entrance",
                                           "location": "bench", "status": "approved", "masks": [],
                                           "snapshot_at": None}, id="bench-cam")
        central.reload_cameras()
        start = (central.now() - timedelta(hours=3)).replace(microsecond=0)
        start_us = int(start.timestamp() * 1_000_000)
        per_segment = LOOP_SECONDS * FPS
        self.plain = root / "plain.h264"
        prev = None
        with open(self.plain, "wb") as plain:
            for n in range(seconds // LOOP_SECONDS):
                path = central.archive.incoming_path("bench-cam", n)
                writer = seg.SegmentWriter(path, params=seg.StreamParams("bench-cam", WIDTH, HEIGHT, FPS), seq=n,
                                           prev_digest=prev, archive_key=central.keys.archive_public_key(),
                                           signing_key=node, start_us=start_us + n * LOOP_SECONDS * 1_000_000)
                for i, unit in enumerate(units[:per_segment]):
                    k = n * per_segment + i
                    writer.write_frame(Frame(unit.data, unit.keyframe, k * 1_000_000 // FPS))
                    plain.write(unit.data)
                prev = writer.close().digest
                central.archive.commit(path, seg.verify_file(path))
        self.token = central.call("session.login", {"user": DIRECTOR[0], "passphrase": DIRECTOR[1]})["token"]
        version = central.call("policy.text", {}, self.token)["version"]
        central.call("policy.acknowledge", {"version": version}, self.token)
        end = start + timedelta(seconds=seconds)
        today = central.now().date().isoformat()
        instrument = self.call("instrument.record", kind="subpoena", reference="BENCH-1", court="Bench court",
                               issued_on=today, received_on=today, description="one hour of the bench camera",
                               cameras=["bench-cam"], start=iso(start), end=iso(end))["instrument"]
        self.call("counsel.record", instrument=instrument["id"], counsel="Bench counsel", consulted_on=today,
                  summary="fine")
        self.release = self.call("release.create", instrument=instrument["id"], cameras=["bench-cam"],
                                 start=iso(start), end=iso(end), recipient="Bench police")["release"]
        self.call("archive.unseal", passphrase=DIRECTOR[1])

    def call(self, op: str, **args):
        return self.central.call(op, args, self.token)

    def build(self, destination: Path) -> dict:
        from appliance.rules.export import wait_for

        started = self.call("release.build", release=self.release["id"], to=str(destination),
                            medium="bench scratch", taken_by="nobody")
        status = wait_for(self.central, started["build"]["build"], timeout=3600)
        if status["state"] != "built":
            raise RuntimeError(f"the build failed: {status['error']}")
        return status

    def verify_and_decrypt(self) -> None:
        """The floor's first part: read, verify and decrypt the hour as the build does, doing nothing with it."""
        from appliance.formats import segment as seg
        from appliance.rules.footage import enrolled

        lookup, key = enrolled(self.central, "bench-cam"), self.central.custody.private_key()
        for stored in self.central.archive.segments("bench-cam"):
            info, data = seg.read_verified(stored.path, lookup)
            for _frame in seg.decrypt_verified(stored.path, key, info, data):
                pass

    def sha256_pass(self) -> None:
        """The floor's second part: one SHA-256 pass over the hour's H.264 (the package makes three:
        each segment's part and the clip's whole stream, both in the manifest, and the MP4 for SHA256SUMS)."""
        digest = hashlib.sha256()
        with open(self.plain, "rb") as f:
            while block := f.read(1024 * 1024):
                digest.update(block)

    def close(self) -> None:
        self.central.close()
        shutil.rmtree(self._sock_dir, ignore_errors=True)


def _phases(history: list, total: float) -> dict:
    """Seconds spent in each kind of step of one build (from its progress history)."""
    phases: dict[str, float] = {}
    marks = history + [["end", None, total]]
    for (step, _done, t0), (_next, _d, t1) in zip(marks, marks[1:]):
        kind = ("clip" if "segment" in step else step.split(" ")[0] if step.startswith("still") else step)
        phases[kind] = round(phases.get(kind, 0.0) + t1 - t0, 3)
    return phases


def run(settings: common.Settings) -> dict:
    from hw.annexb import split_access_units

    seconds = 2 * LOOP_SECONDS if settings.quick else 3600
    reps = 1 if settings.quick else 3
    package_times, ffmpeg_times, package_cpu, ffmpeg_cpu = [], [], [], []
    floor: dict[str, list] = {"verify_decrypt_seconds": [], "verify_decrypt_cpu_seconds": [],
                              "sha256_pass_seconds": [], "sha256_pass_cpu_seconds": []}
    with common.scratch(settings, NAME) as tmp:
        units = split_access_units(_loop_clip(tmp / "loop.h264"))
        t0 = time.monotonic()
        archive = _Archive(tmp, seconds, units)
        setup_seconds = time.monotonic() - t0
        try:
            plain_bytes = archive.plain.stat().st_size
            for n in range(reps):
                for side in (("package", "ffmpeg") if n % 2 == 0 else ("ffmpeg", "package")):
                    out = tmp / f"out-{side}-{n}"
                    out.mkdir()
                    common.settle()
                    cpu0 = sum(common.rusage_self()) + sum(common.rusage_children())
                    t = time.perf_counter()
                    if side == "package":
                        status = archive.build(out)
                    else:
                        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "h264", "-framerate",
                                        str(FPS), "-i", str(archive.plain), "-c", "copy", str(out / "out.mp4")],
                                       check=True, timeout=common.FFMPEG_TIMEOUT, capture_output=True)
                    elapsed = time.perf_counter() - t
                    cpu = sum(common.rusage_self()) + sum(common.rusage_children()) - cpu0
                    (package_times if side == "package" else ffmpeg_times).append(elapsed)
                    (package_cpu if side == "package" else ffmpeg_cpu).append(cpu)
                    if side == "package":
                        package_bytes = status["result"]["bytes"]
                        steps = _phases(status["history"], elapsed)
                    shutil.rmtree(out)
                for name, work in (("verify_decrypt", archive.verify_and_decrypt), ("sha256_pass", archive.sha256_pass)):
                    common.settle()
                    cpu0, t = sum(common.rusage_self()), time.perf_counter()
                    work()
                    floor[f"{name}_seconds"].append(time.perf_counter() - t)
                    floor[f"{name}_cpu_seconds"].append(sum(common.rusage_self()) - cpu0)
        finally:
            archive.close()
    ratio = common.median(package_times) / common.median(ffmpeg_times)
    return common.result(
        NAME, TITLE, figure=common.median(package_times), unit="s", baseline=common.median(ffmpeg_times),
        baseline_unit="s", baseline_name="ffmpeg -f h264 -i plain.h264 -c copy out.mp4", ratio=ratio,
        checks=[common.check("package / ffmpeg wall time", ratio, "<=", TARGET)],
        details={"seconds_of_video": seconds, "width": WIDTH, "height": HEIGHT, "fps": FPS,
                 "plaintext_bytes": plain_bytes, "package_bytes": package_bytes, "reps": reps,
                 "package_seconds": package_times, "ffmpeg_seconds": ffmpeg_times,
                 "package_cpu_seconds": package_cpu, "ffmpeg_cpu_seconds": ffmpeg_cpu,
                 "cpu_ratio": common.median(package_cpu) / common.median(ffmpeg_cpu),
                 **{f"floor_{k}": v for k, v in floor.items()},
                 "floor_verify_decrypt_over_ffmpeg": common.median(floor["verify_decrypt_seconds"])
                 / common.median(ffmpeg_times),
                 "phases_seconds_last_build": steps, "setup_seconds": round(setup_seconds, 1)},
    )
